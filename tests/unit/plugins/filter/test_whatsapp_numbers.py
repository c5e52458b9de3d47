"""Table-driven tests of the whatsapp_numbers / whatsapp_number_errors filters."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import whatsapp_numbers as module
from ansible_collections.borgstack.stack.plugins.filter.whatsapp_numbers import whatsapp_number_errors
from ansible_collections.borgstack.stack.plugins.filter.whatsapp_numbers import whatsapp_numbers

BASE = {"instance": "principal", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1}
TWO = {**BASE, "teams": ["Vendas"],
       "numbers": [{"instance": "principal", "inbox": "WhatsApp"},
                   {"instance": "vendas", "inbox": "Vendas", "team": "Vendas"}]}


def test_no_list_is_todays_single_number():
    assert whatsapp_number_errors(BASE) == []
    assert whatsapp_numbers(BASE, "WhatsApp") == [
        {"instance": "principal", "inbox": "WhatsApp", "inbox_id": 1, "team": None}]
    assert whatsapp_numbers({**BASE, "instance": "loja", "chatwoot_inbox_id": 3}, "Atendimento") == [
        {"instance": "loja", "inbox": "Atendimento", "inbox_id": 3, "team": None}]


def test_two_numbers_first_is_the_default_inbox():
    assert whatsapp_number_errors(TWO) == []
    assert whatsapp_numbers(TWO) == [
        {"instance": "principal", "inbox": "WhatsApp", "inbox_id": 1, "team": None},
        {"instance": "vendas", "inbox": "Vendas", "inbox_id": None, "team": "Vendas"}]


def numbers(*entries, teams=("Vendas", "Suporte")):
    return {**BASE, "teams": list(teams), "numbers": list(entries)}


@pytest.mark.parametrize("value, fragments", [
    # duplicates (case ignored)
    (numbers({"instance": "a", "inbox": "A"}, {"instance": "a", "inbox": "B"}),
     ["numbers[1].instance: 'a' is already numbers[0]'s instance"]),
    (numbers({"instance": "a", "inbox": "A"}, {"instance": "A", "inbox": "B"}), ["numbers[1].instance"]),
    (numbers({"instance": "a", "inbox": "Vendas"}, {"instance": "b", "inbox": "vendas"}),
     ["numbers[1].inbox: 'vendas' is already numbers[0]'s inbox", "own inbox name"]),
    # instance names Evolution API cannot take in a path
    (numbers({"instance": "minha loja", "inbox": "A"}), ["numbers[0].instance: 'minha loja'", "letters, digits"]),
    (numbers({"instance": "a/b", "inbox": "A"}), ["numbers[0].instance"]),
    (numbers({"instance": "x" * 65, "inbox": "A"}), ["numbers[0].instance"]),
    (numbers({"instance": "", "inbox": "A"}), ["numbers[0].instance"]),
    (numbers({"instance": 5, "inbox": "A"}), ["numbers[0].instance"]),
    (numbers({"inbox": "A"}), ["numbers[0].instance: None"]),
    ({**BASE, "instance": "a b"}, ["borgstack_customer_service.instance: 'a b'"]),
    # inbox names
    (numbers({"instance": "a"}), ["numbers[0].inbox: None"]),
    (numbers({"instance": "a", "inbox": " A"}), ["numbers[0].inbox"]),
    (numbers({"instance": "a", "inbox": ""}), ["numbers[0].inbox"]),
    (numbers({"instance": "a", "inbox": "x" * 101}), ["numbers[0].inbox"]),
    # teams
    (numbers({"instance": "a", "inbox": "A", "team": "Compras"}),
     ["numbers[0].team: 'Compras' is not one of borgstack_customer_service.teams (Vendas, Suporte)", "add it to teams"]),
    (numbers({"instance": "a", "inbox": "A", "team": "Vendas"}, teams=()), ["(none)"]),
    ({**BASE, "teams": "Vendas"}, ["borgstack_customer_service.teams must be a list"]),
    ({**BASE, "teams": ["Vendas", "vendas"]}, ["teams lists a team twice"]),
    # shape
    (numbers({"instance": "a", "inbox": "A", "phone": "+55"}), ["numbers[0] has unknown key(s) phone"]),
    (numbers("a"), ["numbers[0] must be a dict"]),
    ({**BASE, "numbers": []}, ["numbers must be a non-empty list"]),
    ({**BASE, "numbers": {"instance": "a"}}, ["numbers must be a non-empty list"]),
    ("principal", ["borgstack_customer_service must be a dict"]),
])
def test_bad_numbers_name_the_variable_and_the_fix(value, fragments):
    errors = whatsapp_number_errors(value)
    assert len(errors) == 1, errors
    assert errors[0].startswith("borgstack_customer_service")
    for fragment in fragments:
        assert fragment in errors[0]
    with pytest.raises(AnsibleFilterError, match="borgstack_customer_service"):
        whatsapp_numbers(value)


@pytest.mark.parametrize("name", ["principal", "vendas-sp", "Loja_2", "a", "x" * 64])
def test_instance_names_evolution_takes(name):
    assert whatsapp_number_errors(numbers({"instance": name, "inbox": "A"})) == []


def test_team_is_optional_and_matched_ignoring_case():
    assert whatsapp_number_errors(numbers({"instance": "a", "inbox": "A", "team": None},
                                          {"instance": "b", "inbox": "B", "team": "suporte"})) == []


def test_every_problem_is_reported_at_once():
    errors = whatsapp_number_errors(numbers({"instance": "a b", "inbox": ""},
                                            {"instance": "c", "inbox": "C", "team": "X"}))
    assert len(errors) == 3


def test_filters_are_offered_under_their_names():
    assert set(module.FilterModule().filters()) == {"whatsapp_number_errors", "whatsapp_numbers"}
