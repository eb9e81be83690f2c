"""Sphinx configuration: builds the site from docs/ (MyST Markdown) and the API reference.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Navigation lives in `NAV` below, one line per page. A page in docs/ that no section lists is
still built and still reachable: it goes to the "More" section of the sidebar on its own, so a
new page never fails the build; move it into a section by adding its name to that section.

This file must not import dhaga at module level beyond what autodoc needs: it only configures.
"""

from __future__ import annotations

import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the dhaga package of this checkout

project = "dhaga"
author = "The dhaga developers"
copyright = "The dhaga developers"  # noqa: A001 - Sphinx's name

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "dhaga"
# No sphinx.ext.viewcode: its highlighted copy of every module more than doubles the build
# time, and the test suite builds the site on every run.

myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve (and fail when they don't)
myst_enable_extensions = ["colon_fence"]

# Docstrings name other objects with single backticks: link them when Sphinx knows the name.
default_role = "py:obj"
# ``type[...]`` in a signature also matches attributes named ``type`` (Socket.type, ...): Sphinx
# then links the builtin anyway; only that ambiguity notice is silenced, broken links still fail.
suppress_warnings = ["ref.python"]
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # shown, and reported by _require_docstrings below
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: fields autodoc also lists stay single

# --------------------------------------------------------------------------------- navigation
#: The sidebar: (caption, [page names without .md]). One line per page; a page left out of
#: every section still builds and appears under "More".
#: A page listed here but not (yet) in docs/ is left out, so pages being written elsewhere are
#: listed in advance (architecture, databases, celery, security, debugging).
NAV: list[tuple[str, list[str]]] = [
    ("Concepts", [
        "concepts",
        "blocking",
        "kill-and-timeouts",
        "asyncio-and-tornado",
        "architecture",
    ]),
    ("Features", [
        "sync",
        "networking",
        "monkey-patching",
        "databases",
        "rpc",
        "web",
        "celery",
        "messaging",
        "clone",
    ]),
    ("Running in production", [
        "security",
        "debugging",
    ]),
    ("Migrating and choosing", [
        "choosing",
        "migrating-from-gevent",
        "migrating-from-eventlet",
        "migrating-from-asyncio",
        "migrating-from-threads",
    ]),
    ("Debugging", [
        "debugging",
    ]),
    ("Performance", [
        "benchmarks",
    ]),
    ("API reference", [
        "api/index",
    ]),
]  # fmt: skip


def _all_pages() -> list[str]:
    pages = []
    for root, dirs, files in os.walk(HERE):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        for name in files:
            if name.endswith(".md"):
                rel = os.path.relpath(os.path.join(root, name), HERE)
                pages.append(rel[: -len(".md")].replace(os.sep, "/"))
    return sorted(pages)


def _navigation() -> str:
    """The index page's toctrees, from `NAV` plus every page no section lists."""
    listed = {page for _, pages in NAV for page in pages}
    api_pages = {p for p in _all_pages() if p.startswith("api/")}
    rest = [p for p in _all_pages() if p not in listed and p not in api_pages and p != root_doc]
    sections = [*NAV, ("More", rest)] if rest else NAV
    out = []
    for caption, pages in sections:
        present = [p for p in pages if os.path.exists(os.path.join(HERE, p + ".md"))]
        if present:
            body = "\n".join(present)
            out.append(f"\n```{{toctree}}\n:caption: {caption}\n:hidden:\n\n{body}\n```\n")
    return "".join(out)


def _add_navigation(app, docname, source) -> None:
    if docname == root_doc:
        source[0] += _navigation()


# ----------------------------------------------------------------- one home for each name
#: Public modules, in the order that picks a name's home: a name several modules export is
#: documented in the first one, and the others say where (so a reference resolves to one target).
PUBLIC_MODULES = [
    "dhaga", "dhaga.sync", "dhaga.pool", "dhaga.net", "dhaga.monkey", "dhaga.rpc", "dhaga.mq",
    "dhaga.mq.bstar", "dhaga.mq.clone", "dhaga.web", "dhaga.codecs.msgpack_rpc",
    "dhaga.codecs.zmtp", "dhaga.threads", "dhaga.testing", "dhaga.errors",
]  # fmt: skip
_home: dict[int, str] = {}


def _homes() -> dict[int, str]:
    if not _home:
        import importlib

        for modname in PUBLIC_MODULES:
            module = importlib.import_module(modname)
            for name in module.__all__:
                value = getattr(module, name)
                # A name a module imports lazily (its __getattr__) is invisible to automodule:
                # bind it for this build, so it is documented like the others.
                vars(module).setdefault(name, value)
                _home.setdefault(id(value), f"{modname}.{name}")
    return _home


def _framework_hook(name: str, obj: object) -> bool:
    """An undocumented override of a method of a non-dhaga base class (gunicorn's, Tornado's).

    Such methods are called by that framework, not by users, and documented by it.
    """
    import sys

    func = getattr(obj, "fget", obj)
    if inspect.getdoc(func) or "." not in getattr(func, "__qualname__", ""):
        return False
    owner: object = sys.modules.get(getattr(func, "__module__", ""), None)
    for part in func.__qualname__.split(".")[:-1]:
        owner = getattr(owner, part, None)
    return isinstance(owner, type) and any(
        name in vars(base) and not base.__module__.startswith("dhaga")
        for base in owner.__mro__[1:]
    )


def _skip_reexports(app, what, name, obj, skip, options):
    """Document a name several public modules export once, in its home module."""
    if what in ("class", "exception") and not skip and _framework_hook(name, obj):
        return True
    if what != "module" or skip:
        return None
    home = _homes().get(id(obj))
    modname = getattr(app.env, "temp_data", {}).get("autodoc:module")
    if home is not None and modname and home != f"{modname}.{name}":
        if isinstance(obj, (int, str, bytes, float, tuple, frozenset)) or obj is None:
            return None  # constants are cheap to repeat and have no home worth a link
        return True
    return None


def _module_summary(app, what, name, obj, options, lines) -> None:
    """Module docstrings keep their user-facing part: the maintainers' notes are cut."""
    if what == "module":
        cut, para = len(lines), 0
        for i, line in enumerate(lines):
            if not line.strip():
                para = i
            below = lines[i + 1] if i + 1 < len(lines) else ""
            if below.startswith("---"):
                cut = i
                break
            if "must not know" in line or "knows nothing" in line or "must not import" in line:
                cut = para
                break
        del lines[cut:]
        here = [
            f"`{n} <{home}>`"
            for n in getattr(obj, "__all__", ())
            if (home := _homes().get(id(getattr(obj, n))))
            and home != f"{name}.{n}"
            and not isinstance(getattr(obj, n), (int, str, bytes, float, tuple, frozenset))
        ]
        if here:
            lines += ["", "Also exported here (documented at their home): " + ", ".join(here) + "."]
    # Examples are code: a literal block, not rST that trips over ``*`` or ``_``.
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in ("Example:", "Examples:"):
            indent = line[: len(line) - len(line.lstrip())]
            lines[i : i + 1] = [f"{indent}.. rubric:: {stripped[:-1]}", "", f"{indent}::", ""]


def _option_help(app, what, name, obj, options, lines) -> None:
    """A socket option shows its own line of help, not the descriptor class's docstring."""
    if what == "attribute" and type(obj).__name__ == "Option" and isinstance(obj.doc, str):
        lines[:] = [obj.doc[:1].upper() + obj.doc[1:] + "."]


# ------------------------------------------------------------------------ docstring checks
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Yields|Raises)\s*:", re.M)


def _own_doc(what: str, obj: object) -> str | None:
    if what in ("class", "exception"):
        return obj.__dict__.get("__doc__")  # a class's docstring, not one inherited
    return inspect.getdoc(obj)


def _require_docstrings(app, what, name, obj, options, lines) -> None:
    """Warn (a failure under -W) for a public function, class or method without a docstring."""
    if what not in ("function", "method", "class", "exception", "property"):
        return
    if what == "method" and name.rsplit(".", 1)[-1].startswith("__"):
        return
    doc = _own_doc(what, obj)
    if not (doc and doc.strip()) and not any(line.strip() for line in lines):
        from sphinx.util import logging

        logging.getLogger("dhaga.docs").warning(
            "public %s %s has no docstring", what, name, type="dhaga", subtype="docstring"
        )


def setup(app):
    app.connect("source-read", _add_navigation)
    app.connect("builder-inited", lambda app: _homes())
    app.connect("autodoc-process-docstring", _module_summary, priority=400)  # before napoleon
    app.connect("autodoc-process-docstring", _option_help, priority=600)  # after napoleon
    app.connect("autodoc-process-docstring", _require_docstrings)
    app.connect("autodoc-skip-member", _skip_reexports)
    return {"parallel_read_safe": True}
