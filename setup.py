import os
import re
import shutil
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_requirements(fname):
    """Read a requirements file, following ``-r`` includes."""
    reqs = []
    with open(os.path.join(HERE, fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    os.path.join(os.path.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def get_version():
    with open(os.path.join(HERE, 'mmcae', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def add_mim_extension():
    """Put configs, tools and the model index under ``mmcae/.mim`` as the
    OpenMMLab packages ship theirs: copies in a wheel or sdist (``mim search
    mmcae``, ``mim train mmcae CONFIG`` find them after ``pip install .``),
    links to the checkout for an editable install.  openmim 0.3.9 looks for
    the package folder in site-packages, which a PEP 660 editable install
    does not create, so mim finds no model index there (docs/en/notes/
    faq.md, "mim does not find mmcae"); the links keep the layout the same.
    """
    commands = set(sys.argv[1:])
    if commands & {'develop', 'editable_wheel'}:
        mode = 'symlink' if os.name != 'nt' else 'copy'
    elif commands & {'sdist', 'bdist_wheel', 'build', 'build_py'}:
        mode = 'copy'
    else:
        return
    mim_path = os.path.join(HERE, 'mmcae', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = os.path.join(HERE, name)
        dst = os.path.join(mim_path, name)
        if os.path.islink(dst) or os.path.isfile(dst):
            os.remove(dst)
        elif os.path.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(os.path.relpath(src, mim_path), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()
setup(
    name='mmcae',
    version=get_version(),
    description='CAE, CAE v2 and CMAE masked image modeling for OpenMMLab',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    # mim's files (add_mim_extension) travel with the package.
    package_data={'mmcae': [
        '.mim/model-index.yml', '.mim/configs/**/*.py',
        '.mim/configs/**/*.yml', '.mim/tools/**/*.py', '.mim/tools/**/*.sh',
        '.mim/tools/**/*.md'
    ]},
    python_requires='>=3.9',
    # Ranges, never pins: installing mmcae into an environment keeps the
    # torch / mmcv it has. Tested versions: requirements/constraints.txt.
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        'transfer': parse_requirements('requirements/transfer.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        'optional': parse_requirements('requirements/optional.txt'),
        'docs': parse_requirements('requirements/docs.txt'),
        'all': parse_requirements('requirements/transfer.txt') +
        parse_requirements('requirements/tests.txt') +
        parse_requirements('requirements/optional.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
