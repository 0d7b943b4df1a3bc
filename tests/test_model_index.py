"""mim's model index (model-index.yml + configs/*/metafile.yml, MMPretrain's
format): every recipe config is listed once, every listed config exists,
results are numbers quoted in the config's own comments, and a wheel build
ships the index, configs and tools under ``mmcae/.mim`` where mim looks."""
import glob
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return yaml.safe_load(f)


def _metafiles():
    index = _load('model-index.yml')
    assert index['Import'], 'model-index.yml imports nothing'
    return {rel: _load(rel) for rel in index['Import']}


def test_every_recipe_config_listed_once_and_exists():
    listed = []
    for rel, meta in _metafiles().items():
        for m in meta['Models']:
            cfg = m['Config']
            assert os.path.isfile(os.path.join(ROOT, cfg)), (rel, cfg)
            # mim's config id is the model name: keep it the file's name
            assert m['Name'] == os.path.splitext(os.path.basename(cfg))[0]
            listed.append(cfg)
    recipes = sorted(
        os.path.relpath(p, ROOT)
        for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'),
                           recursive=True)
        if '_base_' not in p.split(os.sep))
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    assert sorted(listed) == recipes, (
        'not listed: %s; listed but not a recipe: %s' %
        (sorted(set(recipes) - set(listed)), sorted(set(listed) -
                                                    set(recipes))))


def test_collections_papers_downstream_and_results():
    metas = _metafiles()
    collections = {c['Name']: c for m in metas.values()
                   for c in m['Collections']}
    names = {m['Name'] for meta in metas.values() for m in meta['Models']}
    n_results = 0
    for meta in metas.values():
        for m in meta['Models']:
            paper = collections[m['In Collection']]['Paper']
            assert paper['Title'] and re.match(
                r'https://arxiv\.org/abs/\d{4}\.\d{5}$', paper['URL'])
            for d in m.get('Downstream') or []:
                assert d in names, (m['Name'], d)
            with open(os.path.join(ROOT, m['Config'])) as f:
                comments = '\n'.join(
                    line for line in f if line.lstrip().startswith('#'))
            for r in m['Results'] or []:
                assert r['Task'] and r['Dataset'], m['Name']
                for metric, value in r['Metrics'].items():
                    assert isinstance(value, float) and 0 < value < 100, (
                        m['Name'], metric, value)
                    # the number is the one the config quotes as reported
                    assert re.search(rf'(?<![\d.]){re.escape(str(value))}'
                                     r'(?![\d])', comments), (
                                         m['Name'], metric, value)
                    n_results += 1
    assert n_results >= 40  # the reported numbers above, not an empty index


def test_wheel_build_ships_mim_files(tmp_path):
    """``setup.py build_py`` (what a wheel build runs) copies the model
    index, the configs and the tools into the package's ``.mim`` folder."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'README.md', 'model-index.yml'):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ('mmcae', 'configs', 'tools', 'requirements'):
        shutil.copytree(os.path.join(ROOT, name), src / name, symlinks=True,
                        ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    out = tmp_path / 'lib'
    r = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'build_py', '--build-lib',
         str(out)], cwd=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    mim = out / 'mmcae' / '.mim'
    assert not (mim / 'configs').is_symlink()
    index = yaml.safe_load((mim / 'model-index.yml').read_text())
    for rel in index['Import']:
        meta = yaml.safe_load((mim / rel).read_text())
        for m in meta['Models']:
            assert (mim / m['Config']).is_file(), m['Config']
    for tool in ('train.py', 'test.py', 'dist_train.sh', 'slurm_train.sh'):
        assert (mim / 'tools' / tool).is_file(), tool
