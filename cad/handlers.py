"""The ASGI handler of HTTP requests: Django's, with the middleware chain and the view on ONE thread.

Django's ASGIHandler loads the middleware in async mode. A MiddlewareMixin middleware then runs each of
its process_request/process_response through sync_to_async, a sync-only middleware (ours) switches back
with async_to_sync, and the view and each view middleware hop once more: some ten thread switches per
request, each a wake-up of another thread (a few hundred µs on a quiet machine, milliseconds on a busy
one). Every HTTP view of this project is synchronous, so here the chain is loaded in sync mode, as under
WSGI, and called with one sync_to_async: a request crosses threads three times (request_started, the chain
with its view, response.close). An async view would still work (Django runs it with async_to_sync).

Each request's thread is also reused: Django opens a ThreadSensitiveContext per request, and asgiref starts a
new thread for it and joins it at the end (a third to two fifths of a busy server's time went to that, profiled
under the recommendation benchmark). Here the context gets an idle single-thread executor of this handler
(asgiref's ThreadSensitiveContext(executor=…)), given back when the request ends: one request at a time on
it, all of the request's sync code on its one thread, as before.
"""

from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse

# Idle request threads kept beyond this many are shut down (a burst of concurrent requests is transient).
MAX_IDLE_THREADS = 64


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        base.BaseHandler.__init__(self)  # not ASGIHandler.__init__: it loads the chain in async mode
        self.load_middleware(is_async=False)
        self._idle: list[ThreadPoolExecutor] = []  # touched by the event loop only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # as ASGIHandler
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A request cut short may still run on it: the next one queues behind, on the same thread.
            if len(self._idle) < MAX_IDLE_THREADS:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    async def run_get_response(self, request):
        # thread_sensitive: the request's own thread (ASGIHandler opens a ThreadSensitiveContext per
        # request), the one request_started and response.close run on, so they see the same connection.
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):  # as ASGIHandler: the server chunks the file itself
            response.block_size = self.chunk_size
        return response


def get_asgi_application() -> SyncChainASGIHandler:
    """django.core.asgi.get_asgi_application with this handler."""
    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
