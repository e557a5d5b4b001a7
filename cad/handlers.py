"""The ASGI handler of HTTP requests: Django's, with the middleware chain and the view on ONE thread.

Django's ASGIHandler loads the middleware in async mode. A MiddlewareMixin middleware then runs each of
its process_request/process_response through sync_to_async, a sync-only middleware (ours) switches back
with async_to_sync, and the view and each view middleware hop once more: some ten thread switches per
request, each a wake-up of another thread (a few hundred µs on a quiet machine, milliseconds on a busy
one). Every HTTP view of this project is synchronous, so here the chain is loaded in sync mode, as under
WSGI, and called with one sync_to_async: a request crosses threads three times (request_started, the chain
with its view, response.close). An async view would still work (Django runs it with async_to_sync).
"""

import django
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        base.BaseHandler.__init__(self)  # not ASGIHandler.__init__: it loads the chain in async mode
        self.load_middleware(is_async=False)

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
