"""The documentation says only what the checkout backs.

Over README.md, docs/en/**/*.md and configs/*/README.md:

(a) the generated pages and blocks are what tools/docs/render_docs.py
    writes (model zoo, API page, measurements, zoo / figures blocks);
(b) every relative link resolves to a file of the checkout (and a
    ``#anchor`` into a Markdown file to one of its headings);
(c) every repository path in backticks (``tools/...``, ``configs/...``,
    ``mmcae/...``...) exists;
(d) every ``python tools/....py ...`` command in a fenced code block parses
    with that tool's own argument parser (placeholders such as CONFIG or
    CHECKPOINT are plain values), and every ``bash tools/...sh`` exists;
(e) every registered name the docs give resolves in a registry: the value
    of ``type=...`` anywhere, and the backticked names in the column of a
    table whose header says "registered";
(f) no diary phrase appears outside docs/en/notes/changelog.md.

Each check reports ``file:line: problem``; each has a unit test that feeds
it bad Markdown and expects the culprit to be named.
"""
import argparse
import contextlib
import glob
import importlib.util
import inspect
import io
import os
import os.path as osp
import re
import shlex
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHANGELOG = 'docs/en/notes/changelog.md'
DIARY = ('tried here', 'this machine', 'this session',
         'at the time of writing', 'was written', 'no gpu was available')
# top-level folders and files whose paths the docs name in backticks
REPO_PATH = re.compile(
    r'^(?:\./)?(?:(?:tools|configs|mmcae|docs|tests|requirements|\.ci)/'
    r'[\w.*/-]*|setup\.py|model-index\.yml|requirements\.txt|LICENSE|'
    r'README\.md)$')
# build outputs that the docs may name but the checkout does not hold
# build outputs, and result files that a run writes (the generator renders
# 'Not measured yet: run ...' where one is missing)
NOT_IN_CHECKOUT = ('mmcae/.mim', 'docs/_build', 'docs/results/')
LINK = re.compile(r'!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?'
                  r'\s*\)')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')
FENCE = re.compile(r'^\s*(```+|~~~+)')
TYPE_NAME = re.compile(r"""\btype\s*=\s*['"]?([A-Za-z_][\w.]*)['"]?""")
CAMEL = re.compile(r'^(?:\w+\.)?[A-Z][A-Za-z0-9]*[a-z0-9][A-Z][A-Za-z0-9]*$')


def doc_files(root=ROOT):
    files = [osp.join(root, 'README.md')]
    files += glob.glob(osp.join(root, 'docs', 'en', '**', '*.md'),
                       recursive=True)
    files += glob.glob(osp.join(root, 'configs', '*', 'README.md'))
    return sorted(osp.relpath(f, root) for f in files if osp.isfile(f))


def _text(rel, root=ROOT):
    with open(osp.join(root, rel), encoding='utf-8') as f:
        return f.read()


def lines_of(text):
    """(line number, line, fence info or None) for every line; the fence
    lines themselves are left out."""
    fence = None
    for n, line in enumerate(text.split('\n'), 1):
        m = FENCE.match(line)
        if m and (fence is None or m.group(1)[0] == fence[0][0] and
                  len(m.group(1)) >= len(fence[0])):
            fence = None if fence else (m.group(1),
                                        line.strip()[len(m.group(1)):])
            continue
        yield n, line, (fence[1].strip() if fence else None)


def prose(text):
    """(line number, line with code spans blanked) outside fenced code."""
    for n, line, fence in lines_of(text):
        if fence is None:
            yield n, CODE_SPAN.sub(lambda m: ' ' * len(m.group(0)), line)


def code_spans(text):
    for n, line, fence in lines_of(text):
        if fence is None:
            for m in CODE_SPAN.finditer(line):
                yield n, m.group(2).strip()


# ------------------------------------------------------------ (b) links --
def slug(heading):
    """The anchor of a Markdown heading (GitHub's rule, which myst-parser's
    ``myst_heading_anchors`` follows)."""
    s = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip())
    s = re.sub(r'[^\w\- ]', '', s.lower())
    return s.replace(' ', '-')


def anchors(text):
    return {slug(line.lstrip('#')) for _, line, fence in lines_of(text)
            if fence is None and re.match(r'^#{1,6}\s', line)}


def check_links(rel, text, root=ROOT):
    bad = []
    here = osp.dirname(osp.join(root, rel))
    for n, line in prose(text):
        for m in LINK.finditer(line):
            target = m.group(1)
            if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition('#')
            full = osp.normpath(osp.join(here, path)) if path else \
                osp.join(root, rel)
            if osp.commonpath([full, root]) != root:
                bad.append(f'{rel}:{n}: link {target!r} leaves the checkout')
            elif not osp.exists(full):
                bad.append(f'{rel}:{n}: link {target!r}: no such file '
                           f'{osp.relpath(full, root)}')
            elif anchor and full.endswith('.md') and anchor not in anchors(
                    text if not path else _text(osp.relpath(full, root),
                                                root)):
                bad.append(f'{rel}:{n}: link {target!r}: no heading '
                           f'#{anchor} in {osp.relpath(full, root)}')
    return bad


# ------------------------------------------------- (c) paths in backticks --
def check_paths(rel, text, root=ROOT):
    bad = []
    for n, span in code_spans(text):
        if not REPO_PATH.match(span) or span.startswith(NOT_IN_CHECKOUT):
            continue
        path = span[2:] if span.startswith('./') else span
        if not glob.glob(osp.join(root, path)):
            bad.append(f'{rel}:{n}: `{span}` is not in the checkout')
    return bad


# -------------------------------------------------- (d) tool commands --
class _Parsed(Exception):
    pass


_TOOLS = {}


def _tool(path):
    """The tool module at ``path`` (absolute), imported once."""
    if path not in _TOOLS:
        name = 'docs_tool_' + re.sub(r'\W', '_', path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[path] = module
    return _TOOLS[path]


def parse_tool_args(path, argv, root=ROOT):
    """Parse ``argv`` with the argument parser of the tool at ``path``;
    return None, or argparse's complaint. Nothing past the parsing runs:
    ``parse_args(argv)`` where the tool has one; otherwise its
    ``parse_args()`` / ``main()`` under a patched ``sys.argv``, stopped as
    soon as argparse has parsed."""
    with open(osp.join(root, path)) as f:
        source = f.read()
    if 'parse_args' not in source:  # no argparse at all
        return None if not argv else 'the tool takes no arguments'
    module = _tool(osp.join(root, path))
    err = io.StringIO()
    env = dict(os.environ)
    real_parse = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        ns = real_parse(self, args, namespace)
        raise _Parsed(ns)

    fn = getattr(module, 'parse_args', None)
    old_argv = sys.argv
    try:
        with contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            sys.argv = [path] + list(argv)  # argparse's prog name too
            if fn is not None and inspect.signature(fn).parameters:
                fn(list(argv))
            else:
                if fn is not None:
                    fn()
                elif not hasattr(module, 'main'):
                    return 'no parse_args() or main() to parse with'
                else:
                    argparse.ArgumentParser.parse_args = parse_and_stop
                    module.main()
    except _Parsed:
        pass
    except SystemExit as e:
        if e.code not in (0, None):
            return (err.getvalue().strip().splitlines() or [str(e)])[-1]
    finally:
        argparse.ArgumentParser.parse_args = real_parse
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(env)
    return None


def commands(text):
    """(line number, argv) of each shell line in fenced code blocks, with
    backslash continuations joined and ``$ `` prompts dropped."""
    buf, start = '', None
    for n, line, fence in lines_of(text):
        # shell blocks; ```text is for what a command prints
        if fence is None or fence.lower() not in ('', 'shell', 'bash', 'sh',
                                                  'console'):
            buf, start = '', None
            continue
        s = line.strip()
        if start is None:
            start = n
            s = s[2:] if s.startswith('$ ') else s
        if s.endswith('\\'):
            buf += s[:-1] + ' '
            continue
        buf += s
        try:
            argv = shlex.split(buf, comments=True)
        except ValueError:
            argv = []
        segment, skip = [], False  # each command between shell operators
        for tok in argv + [';']:
            if skip:  # the file of a redirection
                skip = False
            elif tok in ('|', '||', '&&', ';', '&'):
                while segment and re.match(r'^[A-Za-z_]\w*=', segment[0]):
                    segment = segment[1:]  # FOO=bar python ...
                if segment:
                    yield start, segment
                segment = []
            elif re.match(r'^\d?[<>]', tok):  # >log, 2>&1, > log
                skip = re.fullmatch(r'\d?(>>?|<)', tok) is not None
            else:
                segment.append(tok)
        buf, start = '', None


def check_commands(rel, text, root=ROOT):
    bad = []
    for n, argv in commands(text):
        exe = argv[0]
        if re.match(r'^(?:.*/)?python3?$', exe) and len(argv) > 1 and \
                argv[1].startswith(('tools/', './tools/')):
            tool, args = argv[1].lstrip('./'), argv[2:]
        elif exe in ('bash', 'sh') and len(argv) > 1 and \
                argv[1].startswith(('tools/', './tools/')):
            if not osp.isfile(osp.join(root, argv[1])):
                bad.append(f'{rel}:{n}: {argv[1]} is not in the checkout')
            continue
        else:
            continue
        if not osp.isfile(osp.join(root, tool)):
            bad.append(f'{rel}:{n}: {tool} is not in the checkout')
            continue
        for a in args:
            if REPO_PATH.match(a) and a.startswith(('configs/', 'tools/')) \
                    and not osp.exists(osp.join(root, a)):
                bad.append(f'{rel}:{n}: {a} (an argument of {tool}) is not '
                           'in the checkout')
        msg = parse_tool_args(tool, args, root)
        if msg:
            bad.append(f'{rel}:{n}: {tool} {" ".join(args)}: {msg}')
    return bad


# ----------------------------------------------- (e) registered names --
def registry_resolves(name):
    """True when ``name`` (``scope.Name`` allowed) is registered in
    mmcae's, MMPretrain's, mmengine's, MMDetection's or MMSegmentation's
    registries."""
    import mmengine.registry as root_reg
    import mmpretrain.registry as mmp_reg
    from mmengine.registry import Registry
    regs = [r for mod in (mmp_reg, root_reg) for r in vars(mod).values()
            if isinstance(r, Registry)]
    for mod in ('mmdet.registry', 'mmseg.registry'):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        regs += [r for r in vars(m).values() if isinstance(r, Registry)]
    for reg in regs:
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                if reg.get(name) is not None:
                    return True
            except Exception:  # a scope that is not installed
                continue
    return False


def registered_names(text):
    """(line number, name): ``type=Name`` anywhere, and the backticked
    names in a "registered" column of a table."""
    col = None
    for n, line, fence in lines_of(text):
        for m in TYPE_NAME.finditer(line):
            # type=int (argparse) is not a registry type: names only
            # (CamelCase in prose, capitalised in code)
            last = m.group(1).split('.')[-1]
            if CAMEL.match(m.group(1)) or (fence is not None and
                                           last[:1].isupper()):
                yield n, m.group(1)
        if fence is not None:
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if not line.lstrip().startswith('|'):
            col = None
        elif col is None:
            hits = [i for i, c in enumerate(cells) if 'registered' in
                    c.lower()]
            col = hits[0] if hits else -1
        elif col >= 0 and col < len(cells):
            m = re.fullmatch(r'`([\w.]+)`', cells[col])
            if m:
                yield n, m.group(1)


_RESOLVED = {}


def check_registered(rel, text, resolves=None):
    resolves = resolves or registry_resolves
    bad = []
    for n, name in registered_names(text):
        if name not in _RESOLVED:
            _RESOLVED[name] = resolves(name)
        if not _RESOLVED[name]:
            bad.append(f'{rel}:{n}: {name!r} is not a registered type')
    return bad


# --------------------------------------------------------- (f) diary --
def check_diary(rel, text):
    if rel == CHANGELOG:
        return []
    bad = []
    for n, line in enumerate(text.split('\n'), 1):
        for phrase in DIARY:
            if phrase in line.lower():
                bad.append(f'{rel}:{n}: diary phrase {phrase!r} (history '
                           f'goes to {CHANGELOG})')
    return bad


# ------------------------------------------------------ over the docs --
def _over_docs(check):
    bad = []
    for rel in doc_files():
        bad += check(rel, _text(rel))
    return bad


def _render_docs():
    spec = importlib.util.spec_from_file_location(
        'render_docs', osp.join(ROOT, 'tools', 'docs', 'render_docs.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_exist():
    files = doc_files()
    for rel in ('docs/en/index.md', 'docs/en/api.md', 'docs/en/model_zoo.md',
                'docs/en/notes/measurements.md', 'configs/cae/README.md'):
        assert rel in files, rel


def test_generated_pages_are_current():
    rd = _render_docs()
    stale = rd.stale(rd.render_all(ROOT), ROOT)
    assert not stale, (f'stale: {stale}; regenerate with '
                       f'`{rd.REGEN}`')


def test_links_resolve():
    bad = _over_docs(check_links)
    assert not bad, '\n'.join(bad)


def test_backticked_paths_exist():
    bad = _over_docs(check_paths)
    assert not bad, '\n'.join(bad)


def test_tool_commands_parse():
    bad = _over_docs(check_commands)
    assert not bad, '\n'.join(bad)


def test_registered_names_resolve():
    bad = _over_docs(check_registered)
    assert not bad, '\n'.join(bad)


def test_no_diary_phrases():
    bad = _over_docs(check_diary)
    assert not bad, '\n'.join(bad)


def test_metafiles_point_at_their_readme():
    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        for rel in yaml.safe_load(f)['Import']:
            with open(osp.join(ROOT, rel)) as g:
                for c in yaml.safe_load(g)['Collections']:
                    assert c['README'] == osp.join(osp.dirname(rel),
                                                   'README.md'), rel
                    assert osp.isfile(osp.join(ROOT, c['README'])), rel


# ------------------------------------- each check catches what it should --
def test_check_links_names_the_broken_link_and_anchor():
    text = ('# Top\n\n## Good part\n\nsee [ok](#good-part), '
            '[readme](../../README.md) and\n[gone](user_guides/nope.md), '
            '[bad anchor](#no-such-part)\n\n```\n[in code](nope.md)\n```\n'
            '[out](../../../../etc/passwd) [web](https://example.com/x)\n')
    bad = check_links('docs/en/index.md', text)
    assert len(bad) == 3, bad
    assert bad[0].startswith('docs/en/index.md:6:') and 'nope.md' in bad[0]
    assert bad[1].startswith('docs/en/index.md:6:') and \
        'no heading #no-such-part' in bad[1]
    assert bad[2].startswith('docs/en/index.md:11:') and 'leaves' in bad[2]


def test_check_paths_names_the_missing_path():
    text = ('Run `tools/train.py` with `configs/cae/no_such.py`; '
            '`tools/model_converters/` and `configs/cae/*.py` exist, '
            '`work_dirs/demo` is an output and `mmcae/.mim` a build one.\n')
    bad = check_paths('README.md', text)
    assert bad == ['README.md:1: `configs/cae/no_such.py` is not in the '
                   'checkout'], bad


def test_check_commands_names_a_command_its_tool_refuses():
    text = '\n'.join([
        '```shell',
        'python tools/train.py configs/cae/cae_vit-demo-p8_1xb64-coslr-'
        '60e_embedded.py --work-dir DIR',
        '.venv/bin/python tools/demo.py --algorithm mae',
        'python tools/test.py CONFIG CHECKPOINT --out FILE',
        'python tools/train.py CONFIG \\',
        '    --no-such-flag',
        'python tools/no_such_tool.py',
        'bash tools/no_such.sh CONFIG 8',
        'python tools/train.py configs/cae/gone.py',
        'cd /x && python tools/demo.py --probe-epochs x > log.txt 2>&1',
        '```',
        'python tools/train.py --outside-code-blocks-is-prose',
    ])
    bad = check_commands('docs/en/x.md', text)
    assert len(bad) == 6, bad
    assert bad[0].startswith('docs/en/x.md:3: tools/demo.py') and \
        "'mae'" in bad[0]
    assert bad[1].startswith('docs/en/x.md:5: tools/train.py') and \
        '--no-such-flag' in bad[1]
    assert bad[2] == 'docs/en/x.md:7: tools/no_such_tool.py is not in the ' \
        'checkout'
    assert bad[3] == 'docs/en/x.md:8: tools/no_such.sh is not in the checkout'
    assert bad[4].startswith('docs/en/x.md:9: configs/cae/gone.py')
    assert bad[5].startswith('docs/en/x.md:10: tools/demo.py') and \
        "invalid int value: 'x'" in bad[5]


def test_check_commands_parses_but_never_runs_the_tool(tmp_path):
    # a tool whose parser is built in main(): parsing stops before the
    # body, which would write a file here
    tool = tmp_path / 'tools' / 'writes.py'
    tool.parent.mkdir()
    tool.write_text(
        'import argparse, sys\n'
        'def main():\n'
        '    p = argparse.ArgumentParser()\n'
        '    p.add_argument("out")\n'
        '    args = p.parse_args()\n'
        '    open(args.out, "w").write("ran")\n')
    out = tmp_path / 'ran.txt'
    text = f'```\npython tools/writes.py {out}\npython tools/writes.py\n```\n'
    try:
        bad = check_commands('x.md', text, root=str(tmp_path))
    finally:
        _TOOLS.pop(str(tool), None)
    assert not out.exists()
    assert len(bad) == 1 and bad[0].startswith('x.md:3:') and \
        'out' in bad[0], bad


def test_check_registered_names_unknown_types():
    text = '\n'.join([
        "model = dict(type='ContextAutoencoder', "
        "backbone=dict(type='CAEViT'))",
        '```python',
        "head = dict(type='NoSuchHead')",
        '```',
        '| registered name | class |',
        '| --- | --- |',
        '| `CAEPretrained` | `mmcae.models.CAEPretrainedInit` |',
        '| `NotRegisteredAnywhere` | `x.Y` |',
        '',
        '`SomeCamelCase` in prose is not a claim that it is registered.',
    ])
    bad = check_registered('docs/en/x.md', text)
    assert bad == ["docs/en/x.md:3: 'NoSuchHead' is not a registered type",
                   "docs/en/x.md:8: 'NotRegisteredAnywhere' is not a "
                   'registered type'], bad


def test_check_diary_names_the_line_and_spares_the_changelog():
    text = 'Fine.\nThis was Tried here on a laptop.\n'
    assert check_diary('docs/en/user_guides/demo.md', text) == [
        "docs/en/user_guides/demo.md:2: diary phrase 'tried here' (history "
        f'goes to {CHANGELOG})']
    assert check_diary(CHANGELOG, text) == []


def test_render_docs_blocks_fail_naming_file_and_line(tmp_path):
    rd = _render_docs()
    with pytest.raises(rd.DocsError, match=r'^x\.md:2: block .zoo:cae. is '
                       'not closed'):
        rd.fill_blocks('a\n<!-- mmcae:begin zoo:cae -->\nb\n', 'x.md', ROOT)
    with pytest.raises(rd.DocsError, match=r'^x\.md:1: unknown block '
                       r'.figures:nope.'):
        rd.fill_blocks('<!-- mmcae:begin figures:nope -->\n'
                       '<!-- mmcae:end figures:nope -->', 'x.md', ROOT)
    with pytest.raises(rd.DocsError, match=r'^x\.md:1: "mmcae:end" without'):
        rd.fill_blocks('<!-- mmcae:end zoo:cae -->', 'x.md', ROOT)


def test_render_docs_check_reports_a_stale_block(tmp_path, capsys):
    """A hand-edited number in a generated block is caught by --check."""
    rd = _render_docs()
    root = tmp_path
    (root / 'docs' / 'results').mkdir(parents=True)
    page = root / 'docs' / 'en' / 'p.md'
    page.parent.mkdir(parents=True)
    page.write_text('# P\n\n<!-- mmcae:begin figures:bench-loop -->\n'
                    '<!-- mmcae:end figures:bench-loop -->\n')
    text = rd.fill_blocks(page.read_text(), 'docs/en/p.md', str(root))
    assert 'Not measured yet: run `python tools/benchmark/' \
        'bench_train_loop.py --json docs/results/bench-loop.json`.' in text
    (root / 'docs' / 'results' / 'bench-loop.json').write_text(
        '{"args": {"batch": 8}, "ratio": null, "syncs": null, "results": '
        '[{"impl": "mmcae", "img_per_s": 12.5, "s_per_iter": 0.64, '
        '"data_time_s": 0.01, "iters": 4, "loss_first": 1.0, '
        '"loss_last": 0.5}], "provenance": {"date": "2026-01-02T03:04:05Z",'
        ' "commit": "abc", "machine": {"cpu": "CPU X", "cores": 2, '
        '"torch": "2.4", "gpu": null}}}')
    text = rd.fill_blocks(text, 'docs/en/p.md', str(root))
    assert '| mmcae | 12.5 | 0.640 |' in text
    assert 'measured 2026-01-02 03:04:05 UTC, commit `abc`, on CPU X ' \
        '(2 cores), no GPU used' in text
    assert '[bench-loop.json](../results/bench-loop.json)' in text
    page.write_text(text.replace('12.5', '99.9'))
    assert rd.stale({'docs/en/p.md': text}, str(root)) == ['docs/en/p.md']
    (root / 'docs' / 'results' / 'bench-loop.json').write_text('{"results')
    with pytest.raises(rd.DocsError, match='bench-loop.json: not a readable'):
        rd.fill_blocks(text, 'docs/en/p.md', str(root))


def test_render_docs_tolerates_any_per_pipeline_rows():
    """bench_pipeline.py's JSON is another tool's: whatever rows it holds
    become one table row each, nested numbers as columns."""
    rd = _render_docs()
    data = {'pipelines': [
        {'name': 'MMPretrain CAE', 'img_per_s_per_core': 250.0, 'ratio': 1.0,
         'workers_per_gpu': {'600': 3, '1200': 5}},
        {'name': 'mmcae CAE', 'img_per_s_per_core': 300.5, 'ratio': 1.2,
         'workers_per_gpu': {'600': 2, '1200': 4}}]}
    lines = rd.fig_generic(data, 'docs/results/bench-pipeline.json')
    assert lines[0] == ('|  | img_per_s_per_core | ratio | workers_per_gpu '
                        '600 | workers_per_gpu 1200 |')
    assert lines[3] == '| mmcae CAE | 300.50 | 1.20 | 2 | 4 |'
    with pytest.raises(rd.DocsError, match='bench-pipeline.json: no rows'):
        rd.fig_generic({'total': 3}, 'docs/results/bench-pipeline.json')
