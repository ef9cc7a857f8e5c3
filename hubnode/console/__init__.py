"""The staff console: web pages hub workers use every day (docs/console.md).

Server-rendered pages (Starlette, Jinja2 templates, plain CSS, no script) over the same
casework the command line uses (:mod:`hubnode.casework`): an enquiry logged here is
sealed, consented and appended exactly as ``hubnode enquiry log`` would, with the acting
staff member's pseudonym added. Modules: :mod:`.staff` (accounts and sessions),
:mod:`.permissions` (the role table), :mod:`.security` (headers, login rate limit),
:mod:`.web` (how every page is served), :mod:`.pages` (the pages), :mod:`.app` (the
application), :mod:`.server` (uvicorn, alone or inside the node).

This package is imported lazily by the commands: ``hubnode staff`` needs only
:mod:`.staff`, and nothing here loads the web framework until a console is served.
"""
