"""A real TCP proxy on loopback for fault and speed tests: throttles bytes and can cut connections."""

from __future__ import annotations

import asyncio
import threading


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``rate`` bytes/s per direction (0: unlimited);
    ``cut_after`` closes each of the first ``cuts`` connections after that many response bytes."""

    def __init__(self, target_port: int, rate: float = 0, cut_after: int = 0, cuts: int = 0) -> None:
        self.target_port, self.rate, self.cut_after, self.cuts = target_port, rate, cut_after, cuts
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut = self.cut_after if self.connections <= self.cuts else 0
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int) -> None:
            sent = 0
            try:
                while data := await src.read(65536):
                    if limit and sent + len(data) > limit:
                        dst.write(data[: limit - sent])
                        await dst.drain()
                        break
                    dst.write(data)
                    await dst.drain()
                    sent += len(data)
                    if self.rate:
                        await asyncio.sleep(len(data) / self.rate)
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (dst, writer, up_w):
                    w.close()

        await asyncio.gather(pump(reader, up_w, 0), pump(up_r, writer, cut))

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
