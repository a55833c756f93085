"""-o FILE: regular files only, symlinks followed, modes kept, foreign files refused, never a partial file.

The command-line tests use `models list` (no trace, fast) so each case is about the file, not the model.
"""
from __future__ import annotations

import os
import stat

import pytest

from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.core.files import write_text


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_character_device_is_refused_and_left_alone(capsys):
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    code, err = run(["models", "list", "--format", "json", "-o", "/dev/null"], capsys)
    assert code == 2
    assert "character device" in err and err.count("\n") == 1
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, even when run as root
    code, _ = run(["models", "list", "-o", "/dev/null", "--force"], capsys)
    assert code == 2  # --force never turns a device into a regular file
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_and_folder_are_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, err = run(["models", "list", "-o", str(fifo)], capsys)
    assert code == 2 and "FIFO" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    code, err = run(["models", "list", "-o", str(tmp_path)], capsys)
    assert code == 2 and "folder" in err


def test_symlink_writes_its_target_and_stays_a_link(tmp_path, capsys):
    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _ = run(["models", "list", "-o", str(link)], capsys)
    assert code == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"schema": "mlfootprint.report/1"' in target.read_text()
    # a link to a device is refused like the device itself
    devlink = tmp_path / "null.json"
    devlink.symlink_to("/dev/null")
    code, err = run(["models", "list", "-o", str(devlink)], capsys)
    assert code == 2 and "character device" in err and devlink.is_symlink()


def test_existing_mode_is_kept_and_new_files_follow_the_umask(tmp_path, capsys):
    kept = tmp_path / "kept.json"
    kept.write_text('{"schema": "mlfootprint.report/1"}\n')
    os.chmod(kept, 0o640)
    assert run(["models", "list", "-o", str(kept)], capsys)[0] == 0
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640
    assert '"models"' in kept.read_text()
    old = os.umask(0o022)
    try:
        assert run(["models", "list", "-o", str(tmp_path / "new.json")], capsys)[0] == 0
        os.umask(0o077)
        assert run(["models", "list", "-o", str(tmp_path / "private.json")], capsys)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600


def test_a_file_mlfootprint_did_not_write_needs_force(tmp_path, capsys):
    notes = tmp_path / "notes.md"
    notes.write_text("my thesis notes\n")
    os.chmod(notes, 0o644)
    code, err = run(["models", "list", "-o", str(notes)], capsys)
    assert code == 2 and "--force" in err
    assert notes.read_text() == "my thesis notes\n"
    assert run(["models", "list", "-o", str(notes), "--force"], capsys)[0] == 0
    assert notes.read_text().startswith("# mlfootprint models")
    assert stat.S_IMODE(os.stat(notes).st_mode) == 0o644
    # an empty file holds nothing to lose
    empty = tmp_path / "empty.json"
    empty.touch()
    assert run(["models", "list", "-o", str(empty)], capsys)[0] == 0


def test_refused_before_any_work_is_done(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    import mlfootprint.commands.count as count_cmd

    monkeypatch.setattr(count_cmd, "run", lambda args: pytest.fail("the verb ran before -o was checked"))
    code, _ = run(["count", "gpt2", "-o", str(notes)], capsys)
    assert code == 2 and notes.read_text() == "keep me\n"


def test_a_failure_mid_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    out = tmp_path / "card.json"
    out.write_text('{"schema": "mlfootprint.report/1", "old": true}\n')
    before = set(os.listdir(tmp_path))

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(UserError, match="No space left"):
        write_text(out, '{"schema": "mlfootprint.report/1", "new": true}\n')
    assert out.read_text() == '{"schema": "mlfootprint.report/1", "old": true}\n'
    assert set(os.listdir(tmp_path)) == before  # the temporary file is gone too


def test_every_format_can_be_rewritten_in_place(tmp_path, capsys):
    # What mlfootprint writes, it recognizes as its own: the same command twice to the same file works.
    for fmt in ("table", "json", "md", "latex", "csv", "html"):
        out = tmp_path / f"models.{fmt}"
        for _ in range(2):
            code, err = run(["footprint", "--device-hours", "10", "--hardware", "a100-80gb", "--format", fmt,
                             "-o", str(out)], capsys)
            assert code == 0, (fmt, err)


def test_missing_folder_is_a_clean_error(tmp_path, capsys):
    code, err = run(["models", "list", "-o", str(tmp_path / "nope" / "x.json")], capsys)
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("name, content", [
    ("train.py", b"import mlfootprint as mf\nrep = mf.count('gpt2')\n"),
    ("paper.tex", b"% efficiency numbers from mlfootprint\n\\section{Results}\n"),
    ("notes.md", b"# mlfootprint is what we used\n\nfor the table below.\n"),
    ("h.sqlite", b"SQLite format 3\x00" + b"\x00" * 84 + b"mlfootprint.report/1"),
    ("gpt2-abc.trace", b"\x80\x05\x95mlfootprint trace cache entry"),
    ("results.csv", b"model,source,accuracy\nmine,paper,0.9\n"),
])
def test_a_file_that_only_mentions_mlfootprint_is_not_taken_for_its_output(tmp_path, capsys, name, content):
    # The word anywhere near the start used to be enough to replace the file with exit 0 (a history database, a
    # script, a paper were lost): only each output format's own opening marks a file as ours.
    path = tmp_path / name
    path.write_bytes(content)
    code, err = run(["footprint", "--energy-kwh", "1", "-o", str(path)], capsys)
    assert code == 2 and "not a file mlfootprint wrote" in err and "--force" in err
    assert path.read_bytes() == content


def test_a_history_database_is_never_replaced_by_an_output(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    assert main(["count", "gpt2", "--seq", "8", "--save", "--db", str(db)]) == 0
    before = db.read_bytes()
    code, err = run(["history", "list", "--db", str(db), "-o", str(db)], capsys)
    assert code == 2 and db.read_bytes() == before
    code, err = run(["footprint", "--energy-kwh", "1", "-o", str(db)], capsys)
    assert code == 2 and db.read_bytes() == before
    capsys.readouterr()
    assert main(["history", "list", "--db", str(db)]) == 0
    assert "gpt2" in capsys.readouterr().out  # still the history, readable


@pytest.mark.parametrize("argv", [
    ["compare", "{a}", "{b}", "-o", "{a}"],
    ["table", "{b}", "-o", "{b}"],
    ["report", "{a}", "--format", "md", "-o", "{a}"],
])
def test_an_output_never_replaces_a_report_the_command_reads(tmp_path, capsys, argv):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["footprint", "--energy-kwh", "1", "--format", "json", "-o", str(a)]) == 0
    assert main(["footprint", "--energy-kwh", "2", "--format", "json", "-o", str(b)]) == 0
    before = {p: p.read_text() for p in (a, b)}
    args = [x.format(a=a, b=b) for x in argv]
    code, err = run(args, capsys)
    assert code == 2 and "this command reads it" in err and err.count("\n") == 1
    assert {p: p.read_text() for p in (a, b)} == before
    assert run(args + ["--force"], capsys)[0] == 0  # asked for in so many words


@pytest.mark.parametrize("argv, fmt", [
    (["table", "{a}"], "table"), (["table", "{a}"], "md"), (["table", "{a}"], "csv"), (["table", "{a}"], "latex"),
    (["compare", "{a}", "{a}"], "csv"), (["compare", "{a}", "{a}"], "html"),
    (["claims", "--only", "palm-540b-mfu"], "table"), (["claims", "--only", "palm-540b-mfu"], "md"),
    (["claims", "--only", "palm-540b-mfu"], "html"), (["claims", "--only", "palm-540b-mfu"], "json"),
    (["history", "list", "--db", "{db}"], "table"), (["history", "list", "--db", "{db}"], "md"),
])
def test_the_other_verbs_outputs_can_be_rewritten_in_place(tmp_path, capsys, argv, fmt):
    a = tmp_path / "a.json"
    assert main(["footprint", "--energy-kwh", "1", "--format", "json", "-o", str(a)]) == 0
    out = tmp_path / f"out.{fmt}"
    args = [x.format(a=a, db=tmp_path / "h.sqlite") for x in argv] + ["--format", fmt, "-o", str(out)]
    for _ in range(2):
        code, err = run(args, capsys)
        assert code == 0, (argv, fmt, err)


def test_the_signatures_name_every_verb_of_the_command_line():
    from mlfootprint.cli import COMMANDS
    from mlfootprint.core.files import VERBS

    assert sorted(VERBS) == sorted(c.__name__.rsplit(".", 1)[1] for c in COMMANDS)


def test_a_history_that_refuses_the_report_leaves_the_output_file_as_it_was(tmp_path, capsys):
    # --save into a folder (or a file that is not a database) exited 2 after -o had written or replaced the report
    tiny = "tests/data/configs/tiny-gpt2"
    old = tmp_path / "b.json"
    assert main(["count", tiny, "--seq", "16", "-o", str(old)]) == 0
    before = old.read_bytes()
    folder = tmp_path / "d"
    folder.mkdir()
    capsys.readouterr()
    assert main(["count", tiny, "--seq", "8", "-o", str(old), "--save", "--db", str(folder)]) == 2
    assert old.read_bytes() == before
    capsys.readouterr()
    new = tmp_path / "new.json"
    assert main(["count", tiny, "--seq", "8", "-o", str(new), "--save", "--db", str(folder)]) == 2
    assert not new.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfootprint: error:") and "\n" not in err


def test_a_pipe_given_as_a_report_is_refused_at_once(tmp_path, capsys):
    # 'report fifo.json' and 'compare a.json fifo.json' waited forever for a writer
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for argv in (["report", str(fifo)], ["compare", str(fifo), str(fifo)]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"mlfootprint: error: cannot read report {fifo}: it is not a regular file (a pipe or a device); " \
                      "give a file"


def test_path_messages_say_what_the_path_is(tmp_path, capsys, monkeypatch):
    # 'd/' was called a link to d; a claims folder 'does not exist'; /dev/null as the history 'disk I/O error'; a
    # history folder from $MLFOOTPRINT_HISTORY was to be fixed with --db
    folder = tmp_path / "d"
    folder.mkdir()
    cases = [(["count", "tests/data/configs/tiny-gpt2", "-o", f"{folder}/"], f"cannot write {folder}/: it is a folder"),
             (["claims", "--file", str(folder)], f"claims file {folder} is a folder; give a .toml file"),
             (["history", "list", "--db", "/dev/null"], None)]
    for argv, message in cases:
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err.strip()
        if message is None:  # reading an empty device: no history yet, nothing written
            assert code == 0, err
            continue
        assert code == 2 and err == f"mlfootprint: error: {message}" + err.split(message, 1)[1], err
        assert "link" not in err and "does not exist" not in err
    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(folder))
    capsys.readouterr()
    assert main(["history", "list"]) == 2
    assert capsys.readouterr().err.strip().endswith("is a folder; set $MLFOOTPRINT_HISTORY to a file path, or pass --db")
