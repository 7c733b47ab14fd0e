"""A request's context is prepared once for all the flags it evaluates, never copied per flag.

Issue 13 point 2: ``evaluate_all`` with a 5,000-key context on 10,000 flags stalled the agent
for seconds, because each targeted flag copied the whole context to add ``$flagd``.
"""

from __future__ import annotations

import json
import random

from agent.engine.evaluate import PreparedContext, evaluate, prepare_context
from agent.engine.formats.document import parse_flag_document

RULES = [
    {"if": [{"in": [{"var": "targetingKey"}, ["u1", "u2"]]}, "on", {"fractional": [["on", 40], ["off", 60]]}]},
    {"if": [{"==": [{"var": "$flagd.flagKey"}, "FLAG"]}, "on", "off"]},
    {"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "on", "off"]},
    {"if": [{"missing": ["plan"]}, "off", "on"]},
    {"if": [{"==": [{"var": ""}, None]}, "on", "off"]},
    {"fractional": [{"var": "email"}, ["on", 50], ["off", 50]]},
]


def flags():
    doc = {"flags": {}}
    for i in range(60):
        key = f"f{i}"
        rule = json.loads(json.dumps(RULES[i % len(RULES)]).replace("FLAG", key))
        doc["flags"][key] = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                             "targeting": rule}
    doc["flags"]["simple"] = {"enabled": True, "rollout_percentage": 50, "allowed_users": ["u3"]}
    doc["flags"]["static"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
    return parse_flag_document(json.dumps(doc).encode(), "f.json").flags


def test_a_prepared_context_answers_exactly_like_the_plain_one_for_every_flag():
    compiled = flags()
    rnd = random.Random(5)
    contexts = [None, {}, {"targetingKey": None}, {"$flagd": {"flagKey": "spoofed"}, "targetingKey": "u1"}]
    contexts += [{"targetingKey": f"u{rnd.randrange(9)}", "email": f"e{rnd.randrange(99)}@x", "plan": "pro"}
                 for _ in range(40)]
    for context in contexts:
        prepared = prepare_context(context)
        for key in compiled:
            plain = evaluate(compiled, key, context, now=1_700_000_000)
            shared = evaluate(compiled, key, prepared, now=1_700_000_000)
            assert (shared.value, shared.variant, shared.reason, shared.error_code) == \
                   (plain.value, plain.variant, plain.reason, plain.error_code), (key, context)


def test_the_caller_s_context_is_never_changed_and_is_copied_once_per_request():
    compiled = flags()
    context = {"targetingKey": "u1", "email": "a@b"}
    before = dict(context)
    prepared = prepare_context(context)
    for key in compiled:
        evaluate(compiled, key, prepared)
        evaluate(compiled, key, context)
    assert context == before
    # One dict per request, holding the context and the last flag's $flagd; nothing per flag.
    assert isinstance(prepared, PreparedContext) and prepared.data["email"] == "a@b"
    assert set(prepared.data) == {"targetingKey", "email", "$flagd"}


def test_a_large_context_is_not_copied_for_each_flag(monkeypatch):
    # Count the copies: a dict subclass would not be a plain dict to the rules, so count what
    # request_data builds instead.
    import agent.engine.evaluate as evaluate_module

    built = []
    real = evaluate_module.request_data
    monkeypatch.setattr(evaluate_module, "request_data", lambda c: built.append(1) or real(c))
    compiled = flags()
    context = {f"k{i}": i for i in range(5000)}
    prepared = evaluate_module.prepare_context(context)
    answers = [evaluate(compiled, key, prepared) for key in compiled]
    assert len(built) == 1 and len(answers) == len(compiled)
