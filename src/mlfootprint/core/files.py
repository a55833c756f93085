"""Writing the files a user names (``-o FILE``, a tracker's report, a calibration profile) safely.

The rules (DESIGN.md, "Files"):

* only regular files are written: a device, a FIFO, a socket or a folder is refused, ``--force`` or not
  (replacing ``/dev/null`` with a regular file, as root, is never what anyone wants);
* a symlink is followed: its target is written, and the link stays;
* an existing file keeps its permission bits (and, where this process may, its owner); a new file gets
  ``0666`` less the user's umask, like any file the shell creates;
* an existing, non-empty file that mlfootprint did not write is refused unless ``force`` is given;
* the text goes to a temporary file in the same folder first, then replaces the target in one rename,
  so a failure (a full disk, an interrupt) never leaves a partial file.
"""
from __future__ import annotations

import os
import re
import stat
import secrets
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError

# How much of an existing file is read to recognize it as an mlfootprint output.
_SNIFF_BYTES = 1 << 13
# The verbs whose name a table or Markdown output opens with (the command line's verbs: a test keeps them equal).
VERBS = ("analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "models", "hardware", "report",
         "compare", "table", "history", "claims")
# How each of mlfootprint's output formats begins. A file is taken as one of ours by this signature only, never by
# the name appearing somewhere in it: a script that imports mlfootprint, a paper that cites it, the history
# database and a trace-cache entry all hold the word, and none of them is ours to replace.
_SIGNATURE = re.compile(r"""\A(?:
      mlfootprint\ (?:VERB)\b                              # table: "mlfootprint count · gpt2 ..."
    | \#\ mlfootprint\ (?:VERB)\b                          # Markdown: "# mlfootprint count: gpt2"
    | <!--\ mlfootprint\ (?:VERB)\ -->\n                    # Markdown of `table`: "<!-- mlfootprint table -->"
    | \#\ Published\ claims,\ recomputed\ by\ mlfootprint\n  # Markdown of `claims`
    | Published\ claims,\ recomputed\ by\ mlfootprint\ *\n  # table of `claims`
    | %\ mlfootprint\ (?:[0-9]|table\.)                    # LaTeX: "% mlfootprint 0.1.0: count report"
    | \{\s*"schema":\ "mlfootprint\.                      # JSON: the report's first key
    | <!doctype\ html>(?:(?!</head>).)*?<meta\ name="generator"\ content="mlfootprint\   # HTML, in its head
    | section,key,value,unit,provenance\n                  # CSV of a report
    | figure,unit,better,[^\n]*\n                          # CSV of `compare`
    | model,source,[^\n]*\ provenance\n                    # CSV of `table`
)""".replace("VERB", "|".join(VERBS)), re.VERBOSE | re.DOTALL | re.IGNORECASE)


def is_mlfootprint_output(head: str) -> bool:
    """Whether a file that begins with ``head`` is something mlfootprint wrote: each format's own opening (a
    table's title line, a report's JSON ``schema``, an HTML head's generator tag, a CSV header)."""
    return _SIGNATURE.match(head) is not None


def resolve_target(path: str | os.PathLike[str]) -> Path:
    """The file that writing ``path`` would replace: symlinks followed, folder checked."""
    p = Path(path)
    if str(path) == "":
        raise UserError("the output file name is empty; give -o FILE")
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {p}: folder {folder} does not exist; create it or choose another path")
    return target


def check_writable(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse, with one line saying why and what to do, anything but a new file, an empty file, or a regular
    file mlfootprint wrote (any regular file with ``force``). Returns the resolved target."""
    target = resolve_target(path)
    # a path shown as typed unless a link was followed ('d/' names the folder d itself, no link)
    shown = str(path) if Path(path) == target else f"{path} (a link to {target})"
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise UserError(f"cannot write {shown}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"cannot write {shown}: it is a folder; give a file name inside it")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise UserError(f"refusing to write {shown}: it is {kind}, and mlfootprint writes regular files only; "
                        "choose another path, or leave out -o to print")
    if force or st.st_size == 0:
        return target
    try:
        with open(target, "rb") as fh:
            head = fh.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot write {shown}: {exc.strerror or exc}") from None
    if not is_mlfootprint_output(head):
        raise UserError(f"refusing to overwrite {shown}: it is not a file mlfootprint wrote; "
                        "choose another path, or add --force to replace it")
    return target


def check_not_read(path: str | os.PathLike[str], inputs: Iterable[tuple[str, str]], force: bool = False) -> None:
    """Refuse to write ``path`` over a file the same command reads (``inputs``: (option, path) pairs), unless
    ``force``: ``compare a.json b.json -o a.json`` would replace a report with the comparison that read it."""
    if force:
        return
    target = resolve_target(path)
    for option, value in inputs:
        try:
            same = os.path.isfile(value) and target.exists() and os.path.samefile(value, target)
        except OSError:
            continue
        if same:
            raise UserError(f"refusing to overwrite {path}: this command reads it ({option}); choose another path "
                            "for -o, or add --force to replace it with the output")


def write_text(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write ``text`` to ``path`` whole or not at all, by the rules of this module. Returns the file written."""
    target = check_writable(path, force)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    folder = target.parent if str(target.parent) else Path(".")
    tmp = None
    try:
        # mode 0o666 on creation: the kernel applies the umask, as for any new file.
        fd, tmp = _create_temporary(folder, target.name)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if existing is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(existing.st_mode))
                try:
                    os.fchown(fh.fileno(), existing.st_uid, existing.st_gid)
                except OSError:
                    pass  # not permitted: the file becomes ours, with the same permission bits
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        check_writable(target, force=True)  # still a regular file (or absent) just before the rename
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return target


def _create_temporary(folder: Path, name: str) -> tuple[int, str]:
    for _ in range(100):
        candidate = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        return fd, str(candidate)
    raise FileExistsError(f"no free temporary name in {folder}")
