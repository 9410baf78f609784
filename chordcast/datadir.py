"""A node's data dir (`chordcast node --data-dir DIR`): the `Durable` port on SQLite.

One database file in WAL mode with `synchronous=FULL`: a save returns once its transaction is
on disk, so what a node acknowledged survives a crash or a power cut. Saves from many
requests at once share one transaction and one fsync (group commit, on a writer thread: the
event loop never waits on the disk). The directory also says whose data it is — the node's
advertised address (its id is derived from it), the id width, the schema version — and a
node refuses a directory that belongs to another node, another schema, or is corrupt, with
one clear error. A lock file keeps two processes out of one directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chord.ports import DiskError, Row

log = logging.getLogger(__name__)

SCHEMA = 1
DB = "chordcast.db"
LOCK = "LOCK"
MAX_GROUP = 4096  # operations in one transaction at most (a long queue commits in turns)


class DataDirError(Exception):
    """The data dir cannot be used: another node's, another schema's, corrupt, or busy."""


_Op = tuple[str, Any, "asyncio.Future[None] | None", asyncio.AbstractEventLoop | None]
# Told of every transaction: how long it took (commit and fsync) and whether it failed.
WriteObserver = Callable[[float, bool], None]


class DataDir:
    """What a node keeps across restarts, in DIR/chordcast.db."""

    keeps = True

    def __init__(self, path: Path, address: str, id_bits: int,
                 on_write: WriteObserver | None = None) -> None:
        self.path = path
        self.on_write = on_write
        if path.exists() and not path.is_dir():
            raise DataDirError(f"the data dir {path} is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_file = open(path / LOCK, "a+")
        except OSError as exc:
            raise DataDirError(f"cannot use the data dir {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise DataDirError(f"the data dir {path} is in use by another chordcast "
                               f"process") from None
        try:
            self._db = self._open(path / DB)
            self.created, self.last_alive_ms = self._claim(address, id_bits)
        except DataDirError:
            self._lock_file.close()
            raise
        self._db_lock = threading.Lock()  # loads (the loop's thread) and the writer share it
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="chordcast-datadir",
                                        daemon=True)
        self._writer.start()
        self._closed = False

    # ------------------------------------------------------------------ opening
    def _open(self, file: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            problems = [r[0] for r in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise DataDirError(f"the data dir {self.path} is corrupt ({DB}: "
                                   f"{'; '.join(problems[:3])}); move it away to start empty")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS rows (space TEXT, key TEXT, rank INTEGER, "
                       "tiebreak BLOB, value BLOB, PRIMARY KEY (space, key)) WITHOUT ROWID")
        except sqlite3.DatabaseError as exc:
            raise DataDirError(f"the data dir {self.path} is corrupt or not a chordcast data "
                               f"dir ({DB}: {exc}); move it away to start empty") from None
        return db

    def _claim(self, address: str, id_bits: int) -> tuple[bool, int]:
        """Check (or, in a new dir, write) whose data this is. (new, last time alive ms)."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        wanted = {"schema": str(SCHEMA), "address": address, "id_bits": str(id_bits)}
        if not meta and self._db.execute("SELECT 1 FROM rows LIMIT 1").fetchone():
            raise DataDirError(f"the data dir {self.path} holds data but not whose it is "
                               f"({DB} lost its meta table); move it away to start empty")
        if not meta:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                                     [*wanted.items(), ("alive_ms", str(_now_ms()))])
            return True, _now_ms()
        if meta.get("schema") != str(SCHEMA):
            raise DataDirError(f"the data dir {self.path} has schema {meta.get('schema')!r}; "
                               f"this chordcast reads schema {SCHEMA}")
        if meta.get("address") != address:
            raise DataDirError(
                f"the data dir {self.path} holds the data of the node at "
                f"{meta.get('address')}, not {address} (a node's id comes from its address: "
                f"give it the same --listen/--advertise, or each node its own --data-dir)")
        if meta.get("id_bits") != str(id_bits):
            raise DataDirError(f"the data dir {self.path} is from a ring with "
                               f"--id-bits {meta.get('id_bits')}, not {id_bits}")
        return False, int(meta.get("alive_ms", "0"))

    # ------------------------------------------------------------------ the port
    async def save(self, space: str, rows: Sequence[Row]) -> None:
        if rows:
            await self._submit("save", (space, list(rows)))

    async def forget(self, space: str, keys: Sequence[str]) -> None:
        if keys:
            await self._submit("forget", (space, list(keys)))

    def load(self, space: str) -> list[Row]:
        with self._db_lock:
            found = self._db.execute("SELECT key, rank, tiebreak, value FROM rows WHERE "
                                     "space = ? ORDER BY key", (space,)).fetchall()
        return [Row(k, r, bytes(t), bytes(v)) for k, r, t, v in found]

    async def alive(self) -> None:
        """Note the time: a dir away for longer than a tombstone lives is not trusted."""
        await self._submit("meta", ("alive_ms", str(_now_ms())))

    async def remember_peers(self, addresses: Sequence[str]) -> None:
        """Nodes of the ring this node was in: where it rejoins after a restart."""
        await self._submit("meta", ("peers", "\n".join(addresses)))

    def peers(self) -> list[str]:
        return [a for a in self._meta("peers").split("\n") if a]

    @property
    def ring(self) -> str:
        """The ring this data belongs to ("" until the node first joined or founded one)."""
        return self._meta("ring")

    async def belong_to(self, ring: str) -> None:
        await self._submit("meta", ("ring", ring))

    def _meta(self, key: str) -> str:
        with self._db_lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def _submit(self, kind: str, args: Any) -> asyncio.Future[None]:
        if self._closed:
            raise DataDirError(f"the data dir {self.path} is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((kind, args, done, loop))
        return done

    # ------------------------------------------------------------------ the writer
    def _write_loop(self) -> None:
        """Take what is queued, apply it in one transaction, fsync, answer everyone."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # end after this batch
                    break
                batch.append(more)
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                with self._db_lock:
                    self._db.execute("BEGIN")
                    try:
                        for kind, args, _, _ in batch:
                            _APPLY[kind](self._db, args)
                        self._db.execute("COMMIT")
                    except BaseException:
                        if self._db.in_transaction:  # (SQLite ends some failures itself)
                            self._db.execute("ROLLBACK")
                        raise
            except Exception as exc:  # a full disk, an I/O error: every waiter hears it
                log.error("data dir %s: write failed: %s", self.path, exc)
                error = exc
            if self.on_write is not None:
                self.on_write(time.perf_counter() - started, error is not None)
            for _, _, done, loop in batch:
                if done is not None and loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(_settle, done, error)

    def close(self) -> None:
        """Finish what is queued, then close (a clean checkpoint of the WAL)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        with self._db_lock:
            try:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'alive_ms'",
                                 (str(_now_ms()),))
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # (a full disk): what was committed is in the WAL
                log.warning("data dir %s: closing without a checkpoint: %s", self.path, exc)
            finally:
                self._db.close()
        self._lock_file.close()


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(DiskError(f"the data dir could not be written: {error}"))


def _save(db: sqlite3.Connection, args: tuple[str, list[Row]]) -> None:
    space, rows = args
    # The highest (rank, tiebreak) stays, whatever order saves come in (as in memory).
    db.executemany(
        "INSERT INTO rows VALUES (?, ?, ?, ?, ?) ON CONFLICT (space, key) DO UPDATE SET "
        "rank = excluded.rank, tiebreak = excluded.tiebreak, value = excluded.value "
        "WHERE (excluded.rank, excluded.tiebreak) > (rows.rank, rows.tiebreak)",
        [(space, r.key, r.rank, r.tiebreak, r.value) for r in rows])


def _forget(db: sqlite3.Connection, args: tuple[str, list[str]]) -> None:
    space, keys = args
    db.executemany("DELETE FROM rows WHERE space = ? AND key = ?", [(space, k) for k in keys])


def _meta(db: sqlite3.Connection, item: tuple[str, str]) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", item)


_APPLY: dict[str, Callable[[sqlite3.Connection, Any], None]] = {
    "save": _save, "forget": _forget, "meta": _meta}


def _now_ms() -> int:
    return int(time.time() * 1000)


def open_data_dir(path: str, address: str, id_bits: int,
                  on_write: WriteObserver | None = None) -> DataDir:
    return DataDir(Path(os.path.expanduser(path)), address, id_bits, on_write)
