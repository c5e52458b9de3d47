# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus' scrape and rule evaluation intervals, checked before anything changes.

``monitoring_interval_errors(scrape, evaluation)`` names each problem in ``monitoring_scrape_interval`` and
``monitoring_evaluation_interval`` and says what to write instead, so the validation play stops a bad value instead
of the promtool gate in the middle of the monitoring role (or, for a value Prometheus takes but the stack cannot
use, nothing at all). The rules:

- a Prometheus duration of one unit (``30s``, ``2m``, ``500ms``): Prometheus accepts more (``1m30s``), but the
  weekly report reads the evaluation interval back as one unit (roles/monitoring/files/borgstack-weekly-report.py);
- from 5 s to 5 min each: faster than 5 s the scrape timeout (at most the interval) is shorter than the blackbox
  probes and the container collector need, and a series not scraped for 5 min is stale in Prometheus (its lookback
  delta), so a longer interval makes every alert flap between scrapes;
- the evaluation interval not shorter than the scrape interval: between two scrapes the rules see the same samples,
  evaluating them again costs CPU and says nothing new.

Pure function; AnsibleFilterError never (the answer is the list of problems).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

_ONE_UNIT = re.compile(r"^([1-9][0-9]*)(ms|s|m|h)$")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
SHORTEST_MS = 5_000
LONGEST_MS = 300_000


def _milliseconds(value: Any) -> Optional[int]:
    match = _ONE_UNIT.match(value) if isinstance(value, str) else None
    return int(match.group(1)) * _MS[match.group(2)] if match else None


def monitoring_interval_errors(scrape: Any, evaluation: Any) -> List[str]:
    """Problems in the two intervals, each naming its variable, the value found and the fix (empty: both good)."""
    errors: List[str] = []
    found: Dict[str, Optional[int]] = {}
    for name, value in (("monitoring_scrape_interval", scrape), ("monitoring_evaluation_interval", evaluation)):
        ms = _milliseconds(value)
        found[name] = ms
        if ms is None:
            errors.append(f"{name} must be a Prometheus duration of one unit such as 30s, 1m or 90s, found {value!r}")
        elif not SHORTEST_MS <= ms <= LONGEST_MS:
            errors.append(f"{name} must be from 5s to 5m (Prometheus marks a series stale after 5m without a "
                          f"sample; under 5s the probes time out), found {value!r}: use e.g. 30s")
    scrape_ms, evaluation_ms = found["monitoring_scrape_interval"], found["monitoring_evaluation_interval"]
    if not errors and evaluation_ms < scrape_ms:
        errors.append(f"monitoring_evaluation_interval ({evaluation}) is shorter than monitoring_scrape_interval "
                      f"({scrape}): the rules would see the same samples again; set it to {scrape} or more")
    return errors


class FilterModule:
    """Monitoring interval filter."""

    def filters(self) -> Dict[str, Any]:
        return {"monitoring_interval_errors": monitoring_interval_errors}
