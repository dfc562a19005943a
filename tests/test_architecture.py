"""The structure stays as docs/architecture.md draws it: layers checked by import-linter,
wording only in the texts module, states and job kinds only as enums.

The source scans read the code with `ast` (nothing is imported or run), so they see every
module, including those only imported when a platform is configured.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.records import GenerationState, JobKind, TuneState
from bot.core.texts import Plural, text
from bot.core.texts.english import MESSAGES

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "bot"
TEXTS = BOT / "core" / "texts"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

SPEAKING_CALLS = {
    # Bot API / discord.py / console calls that put words in front of a user
    "send_message", "reply_text", "edit_message_text", "answer", "reply", "send", "edit",
    "edit_original_response", "send_photo", "send_document", "say", "send_text",
    "update_status", "follow",
    # things that carry a user-facing sentence or label
    "InlineKeyboardButton", "BotCommand", "ButtonSpec", "ActionButton", "UserError",
    "PromptError", "PhotoRejected", "NotEnoughPhotos", "Rejection", "reject", "describe",
}  # fmt: skip
SPEAKING_KEYWORDS = {"text", "content", "caption", "label", "description", "message"}
"""Keyword arguments that carry words whatever the call (`description=` of a slash command)."""


def python_files(folder: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def wording(node: ast.expr) -> str | None:
    """The literal words in an argument (a string, an f-string, `"a" + b`), if any."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if re.search(r"[A-Za-z]{2}", node.value) else None
    if isinstance(node, ast.JoinedStr):
        parts = [wording(value) for value in node.values]
        return next((part for part in parts if part), None)
    if isinstance(node, ast.BinOp):
        return wording(node.left) or wording(node.right)
    if isinstance(node, ast.IfExp):
        return wording(node.body) or wording(node.orelse)
    return None


def call_name(call: ast.Call) -> str:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else ""


def literal_words_spoken(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, words) for every literal passed where a user would read it."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        speaking = call_name(node) in SPEAKING_CALLS
        arguments = list(node.args) if speaking else []
        arguments += [
            keyword.value
            for keyword in node.keywords
            if speaking or keyword.arg in SPEAKING_KEYWORDS
        ]
        for argument in arguments:
            if (words := wording(argument)) is not None:
                yield node.lineno, words


def test_no_chat_sentence_outside_the_texts_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {words!r}"
        for folder in (BOT / "chat", BOT / "core")
        for path, tree in python_files(folder)
        if TEXTS not in path.parents
        for line, words in literal_words_spoken(tree)
    ]
    assert found == [], "chat wording belongs in bot/core/texts (text(key, ...))"


def test_no_chat_sentence_kept_in_a_module_constant() -> None:
    """Sentences parked in a constant (`SORRY = "Sorry, ..."`) and passed by name count too;
    the schema's SQL is the one place where words in constants are not chat wording."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {constant.value[:40]!r}"
        for folder in (BOT / "chat", BOT / "core")
        for path, tree in python_files(folder)
        if TEXTS not in path.parents and path != BOT / "core" / "schema.py"
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
        for constant in ast.walk(node.value)
        if isinstance(constant, ast.Constant)
        and isinstance(constant.value, str)
        and re.search(r"[A-Za-z]+ [A-Za-z]+", constant.value)
    ]
    assert found == []


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scan above must not pass because it sees nothing."""
    source = """
async def handler(message, query, name):
    await message.reply_text("Hello there")
    await query.answer(f"More like #{name} on its way.")
    raise UserError("No " + name)
    Button(label=f"Use {name}")
    await message.reply_text(text("ok"))
"""
    found = sorted(words for _, words in literal_words_spoken(ast.parse(source)))
    assert found == ["Hello there", "More like #", "No ", "Use "]


STORED_VALUES = {member.value for enum in (TuneState, GenerationState, JobKind) for member in enum}


def test_no_state_or_job_kind_literal_outside_the_enums() -> None:
    """States and job kinds are named by their enum members; only records.py spells the
    values (SQL text builds them from the members too)."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for path, tree in python_files(BOT)
        if path.name != "records.py" and TEXTS not in path.parents
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in STORED_VALUES
    ]
    assert found == []


def test_chat_adapters_never_touch_the_store() -> None:
    """Import contracts cannot see `core.store.x`: adapters go through the service."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in python_files(BOT / "chat")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "store"
    ]
    assert found == []


# -- the texts module --------------------------------------------------------------------------


def keys_in_code() -> tuple[set[str], set[str]]:
    """Literal keys in the code (outside the texts, where they are defined), and the prefixes
    of keys built with an f-string."""
    keys: set[str] = set()
    prefixes: set[str] = set()
    for path, tree in python_files(BOT):
        if TEXTS in path.parents:  # where the keys are defined, not used
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in MESSAGES:
                keys.add(node.value)  # passed to text() directly or via a table
            if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
                start = str(node.values[0].value)  # f"tune_state.{state}", f"pack.{slug}.title"
                if start.endswith(".") and any(key.startswith(start) for key in MESSAGES):
                    prefixes.add(start)
    return keys, prefixes


def test_every_message_is_used_and_every_used_key_exists() -> None:
    keys, prefixes = keys_in_code()
    unused = {key for key in MESSAGES if key not in keys and not key.startswith(tuple(prefixes))}
    assert unused == set()
    assert {"tune_state.", "photos.refused."} <= prefixes
    for state in TuneState:
        assert f"tune_state.{state}" in MESSAGES


def test_text_fills_placeholders_and_picks_plural_forms() -> None:
    assert text("photos.summary", count=1, parts="1 added", next_step="Go.") == (
        "1 photo received: 1 added. Go."
    )
    assert text("photos.summary", count=3, parts="3 added", next_step="Go.") == (
        "3 photos received: 3 added. Go."
    )
    assert text("photos.refused.file_too_large", count=2) == "2 over 20 MB"
    with pytest.raises(TypeError, match="count="):
        text("photos.summary", parts="", next_step="")
    with pytest.raises(KeyError):
        text("no.such.key")
    with pytest.raises(KeyError):
        text("models.now_active")  # {model} not given


def test_every_message_formats_with_its_own_fields() -> None:
    """A template's fields are plain names (no attribute or index look-ups on arguments)."""
    for key, entry in MESSAGES.items():
        forms = (entry.one, entry.other) if isinstance(entry, Plural) else (entry,)
        for form in forms:
            fields = re.findall(r"{([^{}:!]*)", form)
            assert all(re.fullmatch(r"[a-z_]+", field) for field in fields), key


# -- layers ------------------------------------------------------------------------------------


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree under `root` (its own copy of the packages comes first)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_imports_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("bot/core/records.py", "import telegram", "bot.core is the platform-agnostic core"),
        ("bot/chat/console.py", "import bot.app", "no import cycles"),
        ("backends/base.py", "import bot.config", "backends never import the bot"),
        ("bot/chat/console.py", "import backends.astria", "never talk to a backend"),
    ],
)
def test_a_broken_boundary_fails_lint_imports(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in ("bot", "backends"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # the forbidden import\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1
    assert contract in result.stdout.split("Broken contracts", 1)[-1], result.stdout
