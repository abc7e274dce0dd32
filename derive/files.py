"""A user's files: read only regular files, never more than a limit; write whole files or nothing."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from derive.errors import DeriveError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def size_text(n: int) -> str:
    """4194304 -> '4 MiB'."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def named(path: str | Path, limit: int = 160) -> str:
    """A path for a message: whole up to `limit` characters, else its start and its length."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 40]}… ({len(text)} characters)"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_user_file(path: str | Path, limit: int, what: str, error: type[DeriveError] = DeriveError,
                   missing: str = "") -> bytes:
    """The bytes of the regular file `path` if it has at most `limit` of them; `error` naming the path otherwise.

    st_size is 0 for devices and pipes, so anything but a regular file is refused before it
    is opened; it is opened non-blocking (a pipe swapped in meanwhile cannot block) and
    checked again, and at most limit + 1 bytes are read, so a file that grows stays bounded.
    """
    path = Path(path)
    most = f"a {what} has at most {size_text(limit)}"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{named(path)}: is {_kind(st.st_mode)}, not a {what} (a regular file of at most {size_text(limit)})")
        if st.st_size > limit:
            raise error(f"{named(path)}: {st.st_size} bytes; {most}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{named(path)}: {missing or 'no such ' + what}") from None
    except OSError as exc:
        raise error(f"{named(path)}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL character: no file has that name
        raise error(f"{named(path)}: {missing or 'no such ' + what} (the name contains a NUL character)") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{named(path)}: is {_kind(mode)}, not a {what} (a regular file of at most {size_text(limit)})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"{named(path)}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{named(path)}: more than {size_text(limit)}; {most}")
    return b"".join(chunks)


def exists(path: str | Path, what: str = "file", error: type[DeriveError] = DeriveError) -> bool:
    """Whether `path` exists; `error` naming it when the system cannot say (a name too long, no permission)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise error(f"{named(path)}: not a usable {what} name ({exc.strerror or exc})") from None
    except ValueError:  # a NUL character: no file has that name
        raise error(f"{named(path)}: not a usable {what} name (it contains a NUL character)") from None
    return True


def check_writable(path: str | Path, flag: str = "") -> Path:
    """`path` as an output file: its folder must exist and be writable, and it must not be a folder."""
    path = Path(path)
    name = f"{flag} {named(path)}" if flag else named(path)
    try:
        return _check_writable(path, name)
    except OSError as exc:  # a name longer than the file system allows, a folder that cannot be searched
        raise DeriveError(f"{name}: cannot write there ({exc.strerror or exc})") from None
    except ValueError:
        raise DeriveError(f"{name}: cannot write there (the name contains a NUL character)") from None


def _check_writable(path: Path, name: str) -> Path:
    folder = path.parent  # Path("x.tex").parent is Path(".")
    if len(os.fsencode(path.name)) > _name_max(folder):  # said before the system's "File name too long"
        raise DeriveError(f"{name}: a file name of {len(os.fsencode(path.name))} bytes; this file system allows "
                          f"at most {_name_max(folder)}")
    if path.is_dir():
        raise DeriveError(f"{name}: that is a folder; name a file in it, such as {named(path / ('out' + path.suffix))}")
    if not folder.is_dir():
        raise DeriveError(f"{name}: folder {named(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeriveError(f"{name}: cannot write in folder {named(folder)} (permission denied)")
    if path.exists() and not path.is_file():
        raise DeriveError(f"{name}: exists and is not a regular file")
    return path


def _name_max(folder: Path) -> int:
    """The longest file name the file system of `folder` takes (255 where it cannot say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def write_atomically(path: str | Path, content: str | bytes, flag: str = "") -> None:
    """Write to a temporary file beside the target and rename it into place: the whole file or nothing."""
    path = check_writable(path, flag)
    name = f"{flag} {named(path)}" if flag else named(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # short: any name the target may have fits
    except OSError as exc:
        raise DeriveError(f"{name}: cannot write in folder {named(path.parent)} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DeriveError(f"{name}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (mkstemp creates files 0600; an output file gets the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
