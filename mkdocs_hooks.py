"""MkDocs hook: the figures and reports under reports/ become part of the site.

The pages in docs/ link to the pipeline's outputs where they are, e.g.
`![…](../reports/frontier.png)`, so the links work on GitHub. MkDocs only knows files
inside docs_dir and would report such a link as missing (an error under --strict). This hook
adds every PNG and Markdown file under reports/ to the build under the source path those links
resolve to (`../reports/…`), published at `reports/…` in the site, so MkDocs checks the links,
rewrites them and copies the files. Nothing is copied into docs/.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel

FOLDER = "reports"
SUFFIXES = {".png", ".md"}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs = Path(config.docs_dir)
    root = Path(config.config_file_path).parent
    for path in sorted((root / FOLDER).rglob("*")):
        if not path.is_file() or path.suffix not in SUFFIXES:
            continue
        relative = path.relative_to(root).as_posix()
        src_uri = Path(*[".."] * len(docs.relative_to(root).parts), relative).as_posix()
        # Published where the same file inside docs/ would be: reports/….png, reports/…/index.html.
        dest_uri = File(
            relative, src_dir=None, dest_dir=config.site_dir, use_directory_urls=config.use_directory_urls
        ).dest_uri
        # Set here: MkDocs' default exclusions would drop a path starting with '.' (a hidden
        # file). The reports' own pages need no place in the nav.
        inclusion = InclusionLevel.NOT_IN_NAV if path.suffix == ".md" else InclusionLevel.INCLUDED
        files.append(
            File(
                src_uri,
                src_dir=str(docs),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
                dest_uri=dest_uri,
                inclusion=inclusion,
            )
        )
    return files
