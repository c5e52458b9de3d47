"""playbooks/backup.yml names the dump set its own run made, read from the job's journal (one invocation).

The report, the wait for the job's last line and the failure check are Jinja expressions over the journal text: they
are evaluated here with Ansible's own templating, as the play evaluates them, against the lines the backup script
prints (roles/backup/files/borgstack-backup.py). A regex that matches nothing (a doubled backslash in a folded scalar
did) fails here instead of in the stack scenario.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
PLAY = AnsibleLoader((ROOT / "playbooks" / "backup.yml").read_text()).get_single_data()[0]
TASKS = {task["name"]: task for task in PLAY["tasks"]}
SCRIPT = (ROOT / "roles" / "backup" / "files" / "borgstack-backup.py").read_text()

DONE = ("postgresql: n8n (n8n) -> postgresql-n8n.dump, 225583 bytes\n"
        "redis: snapshot -> redis-dump.rdb, 681 bytes\n"
        "removed the old dump set 20261206T062109Z\n"
        "dump set /var/backups/borgstack/20261206T063013Z complete (6 files)")
FAILED = "postgresql: n8n (n8n) -> postgresql-n8n.dump, 225583 bytes\nborgstack-backup: FAILED: pg_dump exited 1"
RUNNING = "postgresql: n8n (n8n) -> postgresql-n8n.dump, 225583 bytes"


def _task(key: str) -> dict:
    return next(task for task in PLAY["tasks"] if key in task)


def _templar(journal: str, rc: int = 0) -> Templar:
    return Templar(loader=DataLoader(), variables={
        "__backup_run": {"rc": rc}, "__backup_journal": {"stdout": journal, "stdout_lines": journal.splitlines()},
        "__backup_sets": {"files": [{}, {}, {}]}, "backup_keep": 7})


def test_the_script_prints_the_line_the_play_reads():
    assert 'log(f"dump set {final} complete (' in SCRIPT
    assert 'FAILED: {error}' in SCRIPT


def test_the_report_names_the_set_of_this_run_not_an_older_one():
    message = TASKS["Show the dump set this run made"]["ansible.builtin.debug"]["msg"]
    rendered = _templar(DONE).template(trust_as_template(message))
    assert rendered == "Dump set /var/backups/borgstack/20261206T063013Z (3 kept, backup_keep 7)."


@pytest.mark.parametrize("journal, rc, waits", [
    (DONE, 0, False),       # the job's last line is there
    (FAILED, 0, False),     # a run that failed (the timer's, joined) ends the wait too
    (RUNNING, 0, True),     # journald has not caught up yet, or the timer's run is under way
    ("", 1, False),         # a failed start is read at once
])
def test_the_journal_read_waits_only_for_a_run_that_has_not_ended(journal, rc, waits):
    until = _task("until")["until"]
    assert _templar(journal, rc).evaluate_conditional(trust_as_template(until)) is not waits


@pytest.mark.parametrize("journal, rc, fails", [(DONE, 0, False), (FAILED, 0, True), (DONE, 1, True), ("", 1, True)])
def test_the_play_fails_with_the_jobs_words_unless_the_run_completed(journal, rc, fails):
    when = TASKS["Fail with the job's own words when it failed"]["when"]
    assert _templar(journal, rc).evaluate_conditional(trust_as_template(when)) is fails
