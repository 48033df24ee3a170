"""Helpers for tests and harnesses that drive a child process over its pipes, on trio."""

from __future__ import annotations

import trio


class Lines:
    """Reads a byte stream (a child's stdout, our stdin) line by line, on trio."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def readline(self) -> str:
        """The next line without its newline; raises EOFError when the stream ends first."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError("the process closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


async def reap(process: trio.Process) -> None:
    """Make sure a child process is gone and its pipes closed, whatever happened."""
    if process.returncode is None:
        process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        await process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                await pipe.aclose()
