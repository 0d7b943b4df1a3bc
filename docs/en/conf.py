"""Sphinx configuration of mmcae's documentation (docs/en).

Build (as .ci/run does, warnings are errors)::

    .venv/bin/sphinx-build -W --keep-going docs/en docs/_build/html

The pages are Markdown (myst-parser). ``model_zoo.md``, ``api.md``,
``notes/measurements.md`` and the ``<!-- mmcae:begin ... -->`` blocks in the
other pages are written by ``tools/docs/render_docs.py``; edit the sources
(metafiles, result JSONs, docstrings) and re-run it, not the output.
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
# autodoc imports this checkout's mmcae (the real one: the documentation
# environment is mmcae's own .venv with the whole OpenMMLab stack, so no
# module is mocked and a docstring that no longer imports fails the build).
sys.path.insert(0, ROOT)

with open(os.path.join(ROOT, 'mmcae', 'version.py')) as f:
    release = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
version = release
project = 'mmcae'
author = 'mmcae contributors'
copyright = 'mmcae contributors, Apache License 2.0'

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    # the docstrings are Google style ("Args:")
    'sphinx.ext.napoleon',
]
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']

# "#some-heading" links between pages resolve (GitHub-style slugs, as the
# same Markdown renders on the repository host)
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'furo'
html_title = f'mmcae {release}'


def _outside_pages_as_files(app, doctree):
    """Links from a page to a Markdown file of the repository outside
    docs/en (``../../configs/cae/README.md``, ``../../README.md``) are the
    same links that work on the repository host; myst-parser takes every
    ``.md`` target for a Sphinx document and fails the build on them. Serve
    those files as downloads instead (what myst does for ``.py`` links);
    tests/test_docs.py checks that every relative link resolves."""
    from sphinx import addnodes
    srcdir = os.path.abspath(app.srcdir)
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get('refdomain') != 'doc' or node.get('reftype') != 'myst':
            continue
        target = node['reftarget']
        path = os.path.normpath(os.path.join(srcdir, os.path.dirname(
            app.env.docname), target + '.md'))
        if os.path.commonpath([path, srcdir]) == srcdir or \
                not os.path.isfile(path):
            continue
        new = addnodes.download_reference(
            '', '', *node.children, refdomain=None, reftype='myst',
            refdoc=app.env.docname, refexplicit=True,
            reftarget=os.path.relpath(path, os.path.join(
                srcdir, os.path.dirname(app.env.docname))),
            classes=['xref', 'download', 'myst'])
        node.replace_self(new)


def setup(app):
    # before Sphinx's own doctree-read collectors (priority 500), so that
    # the download collector copies the files
    app.connect('doctree-read', _outside_pages_as_files, priority=400)
