"""The console's pages, one module per area; each exposes ``routes`` (made with
:func:`hubnode.console.web.page`)."""
