"""Every ``flagsock`` command the README and docs/ show is one the CLI accepts, and the flag
files the fleet recipes give do what the text says."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from agent.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PROGRAM = re.compile(r"^(?:\$ )?(?:ExecStart=)?(?:/usr/bin/|/opt/flagsock/bin/)?flagsock (?=[a-z])")
_INLINE = re.compile(r"`((?:/usr/bin/)?flagsock [a-z][^`]*)`")
#: Shell words that end a command (what follows is another command, a redirection, a comment).
_ENDS = {"&&", "||", "|", ";", ">", "<", "#"}


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line) for each flagsock command in a code block (a whole command) or in
    inline code (often part of one: ``flagsock set --on``), where marked ``inline:``."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if _PROGRAM.match(line):
                    found.append((doc.name, _PROGRAM.sub("flagsock ", line)))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for command in _INLINE.findall(prose):
            found.append((f"inline:{doc.name}", command.removeprefix("/usr/bin/")))
    return found


def words(command: str) -> list[str]:
    out = []
    for word in shlex.split(command, comments=True):
        if word in _ENDS:
            break
        if word != "...":  # an elided part of a longer command
            out.append(word)
    return out[1:]


def is_usage_line(command: str) -> bool:
    """A synopsis with placeholders (``--http ADDR``, ``[--prune]``) rather than a command to run."""
    return any(re.fullmatch(r"[A-Z]+(?:\[.*\])?|\[.*\]|.*\.\.\.", arg) for arg in words(command))


COMMANDS = [(doc, command) for doc, command in documented_commands() if not is_usage_line(command)]


def test_the_docs_show_commands_at_all() -> None:
    assert len(COMMANDS) > 30
    assert {name for name, _ in COMMANDS} >= {"fleet.md", "operations.md", "README.md", "inline:fleet.md"}


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_every_documented_command_and_option_exists(doc: str, command: str, capsys) -> None:
    args = words(command)
    parser = build_parser()
    if doc.startswith("inline:"):
        # Part of a command: the subcommand and each option it names must exist.
        commands = parser._subparsers._group_actions[0].choices
        assert args and args[0] in commands, f"{doc}: `{command}`: no such command"
        options = commands[args[0]]._option_string_actions
        unknown = [arg.split("=")[0] for arg in args if arg.startswith("-") and arg.split("=")[0] not in options]
        assert not unknown, f"{doc}: `{command}`: {args[0]} has no option {', '.join(unknown)}"
        return
    try:
        parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{doc}: `{command}` is refused by the CLI: {capsys.readouterr().err.strip()}")


def _fleet_json_blocks() -> list[dict]:
    text = (ROOT / "docs" / "fleet.md").read_text()
    return [json.loads(block) for block in re.findall(r"^```json\n(.*?)^```", text, re.S | re.M)
            if block.lstrip().startswith("{")]


async def test_the_host_canary_of_the_fleet_recipe_picks_about_5_percent_of_hosts(start_agent, tmp_path) -> None:
    """The flagd JSON of docs/fleet.md, "Host canaries", through a real agent: each host its
    machine id, as the unit passes with --context-value machine_id=%m."""
    import uuid

    from tests.helpers import LineClient, write_json

    (doc,) = [block for block in _fleet_json_blocks() if "new-storage-engine" in block.get("flags", {})]
    running = await start_agent([write_json(tmp_path / "flags.json", doc)],
                                context_values=("machine_id=0123456789abcdef0123456789abcdef",))
    hosts = [uuid.uuid4().hex for _ in range(2000)]
    async with await LineClient.connect(running.socket_path) as client:
        # The agent's own machine id, as every request from that host sees it, and then others.
        own = await client.result({"op": "evaluate", "flag": "new-storage-engine"})
        assert own["reason"] == "TARGETING_MATCH" and own["value"] in (True, False)
        on = 0
        for host in hosts:
            result = await client.result({"op": "evaluate", "flag": "new-storage-engine",
                                          "context": {"machine_id": host, "targetingKey": "any-user"}})
            on += result["value"] is True
    assert 0.03 < on / len(hosts) < 0.07, on
