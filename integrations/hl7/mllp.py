"""The MLLP listener (HL7 v2.5.1 Appendix C, Minimal Lower Layer Protocol; release 2 block format).

A message travels as ``0x0B <message> 0x1C 0x0D``. Each connection has its own buffer; a frame larger
than ``mllp_max_message_bytes``, bytes outside a frame, or a frame left unfinished past
``mllp_frame_timeout`` are answered with an AR naming the problem, and the server keeps serving.
Every message is checked (MSH, version, type, ORU structure), stored and committed in the inbox, and
only then acknowledged; its processing is queued after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from himhis.config import Settings
from himhis.db import Database
from integrations.hl7 import ack, inbox
from integrations.hl7.dispatch import Dispatcher
from integrations.hl7.parse import END, START, HL7Error, Message, check_msh, check_oru, split_batch

log = logging.getLogger(__name__)
_VT, _FS_CR = START[0], END


def frame(text: str) -> bytes:
    """A message in an MLLP block."""
    return START + text.encode("utf-8") + END


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # 8859/1, HL7's most common declared character set (MSH-18)


class MllpServer:
    """An asyncio MLLP server storing into the inbox through a group-commit writer."""

    def __init__(self, settings: Settings, db: Database, *, host: str | None = None, port: int | None = None,
                 dispatcher: Dispatcher | None = None) -> None:
        self.settings = settings
        self.db = db
        self.host = host or settings.mllp_host
        self.port = settings.mllp_port if port is None else port
        self.dispatcher = dispatcher or Dispatcher(settings, db)
        self.writer = inbox.InboxWriter(db, after_commit=self.dispatcher)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("MLLP listener on %s:%s", self.host, self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            for w in list(self._open):
                w.close()
            await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
        await asyncio.get_running_loop().run_in_executor(None, self.dispatcher.close)

    async def _sweep(self) -> None:
        """Queue stored messages that are still unprocessed: all at start (the previous run may have
        stopped between commit and queueing), then those waiting longer than ``hl7_requeue_after``."""
        loop = asyncio.get_running_loop()
        older_than: float | None = None
        while True:
            try:
                ids = await loop.run_in_executor(None, lambda o=older_than: self.db.run(
                    lambda s: inbox.waiting(s, older_than=o), write=False))
                if ids:
                    await loop.run_in_executor(None, self.dispatcher, ids)
            except Exception:
                log.exception("the HL7 requeue sweep failed; it will run again")
            older_than = self.settings.hl7_requeue_after
            await asyncio.sleep(max(1.0, self.settings.hl7_requeue_after / 2))

    # -- one connection ------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else None
        self._open.add(writer)
        buf = bytearray()
        in_frame = False  # a 0x0B was read and its 0x1C 0x0D has not come yet
        oversized = False  # discarding the rest of a frame that passed the size limit
        limit = self.settings.mllp_max_message_bytes
        try:
            while True:
                waiting = in_frame or bool(bytes(buf).strip())
                timeout = self.settings.mllp_frame_timeout if waiting else self.settings.mllp_idle_timeout
                try:
                    chunk = await asyncio.wait_for(reader.read(1 << 16), timeout)
                except TimeoutError:
                    if waiting and not oversized:
                        await self._send(writer, [ack.negative(None, HL7Error(
                            f"Bad MLLP framing: the frame was not completed (0x1C 0x0D) within "
                            f"{self.settings.mllp_frame_timeout:g} seconds; closing the connection",
                            code="100", reject=True))])
                    return
                if not chunk:
                    return  # the peer closed; an unfinished frame was never acknowledged
                buf += chunk
                while buf:
                    if not in_frame:
                        start = buf.find(_VT)
                        stray = buf if start < 0 else buf[:start]
                        end = stray.find(_FS_CR)
                        if end >= 0:  # a message sent without its 0x0B
                            await self._send(writer, [self._unframed(bytes(stray[:end]))])
                            del buf[:end + 2]
                            continue
                        if start < 0:
                            if not bytes(buf).strip():
                                buf.clear()
                            elif len(buf) > limit:
                                await self._send(writer, [self._unframed(bytes(buf))])
                                return
                            break
                        if bytes(stray).strip():
                            await self._send(writer, [self._unframed(bytes(stray))])
                        del buf[:start + 1]
                        in_frame = True
                    end = buf.find(_FS_CR)
                    if end < 0:
                        if len(buf) > limit:
                            if not oversized:
                                await self._send(writer, [ack.negative(None, HL7Error(
                                    f"The message is larger than {limit} bytes, the most this listener accepts; "
                                    "it was not stored", code="207", reject=True))])
                            oversized = True
                            del buf[:-1]  # keep a trailing 0x1C whose 0x0D may come next
                        break
                    data = bytes(buf[:end])
                    del buf[:end + 2]
                    in_frame = False
                    if oversized or end > limit:
                        if not oversized:
                            await self._send(writer, [ack.negative(None, HL7Error(
                                f"The message is larger than {limit} bytes, the most this listener accepts; "
                                "it was not stored", code="207", reject=True))])
                        oversized = False
                        continue
                    await self._send(writer, await self._messages(data, peer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the peer went away, or the listener is closing
        finally:
            self._open.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _unframed(self, data: bytes) -> str | None:
        text = _decode(data).strip("\x0b\x1c\r\n ")
        header = None
        with contextlib.suppress(HL7Error):
            header = check_msh(split_batch(text)[0]).header if text.startswith("MSH") else None
        return ack.negative(header, HL7Error(
            f"Bad MLLP framing: {len(data)} bytes arrived outside a frame (a message starts with 0x0B and ends "
            "with 0x1C 0x0D); they were not stored", code="100", reject=True))

    async def _messages(self, data: bytes, peer: str | None) -> list[str | None]:
        """The acknowledgements for one frame: one per message (a batch holds several)."""
        texts = split_batch(_decode(data))
        if not texts:
            return [ack.negative(None, HL7Error("The frame holds no message", code="100", segment="MSH",
                                                reject=True))]
        replies = []
        for text in texts:
            message: Message | None = None
            try:
                message = check_msh(text)
                check_oru(message)
            except HL7Error as exc:
                log.info("HL7 message from %s refused: %s", peer, exc.reason)
                replies.append(ack.negative(message.header if message else None, exc))
                continue
            try:
                await asyncio.wrap_future(self.writer.submit(inbox.Incoming(message.header, text, peer)))
            except Exception:
                replies.append(ack.negative(message.header, HL7Error(
                    "The message could not be stored; send it again", code="207")))
                continue
            replies.append(ack.positive(message.header))
        return replies

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, replies: list[str | None]) -> None:
        for reply in replies:
            if reply is not None:
                writer.write(frame(reply))
        await writer.drain()


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Run the listener until interrupted (``himhis mllp``)."""
    kw = {} if settings.database_url.startswith("sqlite") else {"pool_size": 4, "max_overflow": 4}
    db = Database(settings.database_url, **kw)

    async def main() -> None:
        server = MllpServer(settings, db, host=host, port=port)
        await server.start()
        try:
            await server.serve_forever()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    db.dispose()
