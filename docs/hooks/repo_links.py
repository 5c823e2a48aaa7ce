"""MkDocs hook: links from the manual into the rest of the repository.

A page links a repository file as GitHub shows it, relative to the page (for example
`../experiments/results/cifar10/README.md`), so that the link works when docs/*.md is read
on GitHub. MkDocs knows only the files under docs/ and would call such a link broken. This
hook checks that the target exists (a moved or deleted file is a warning, so `mkdocs build
--strict` fails on it, as on any broken link) and then rewrites the link for the site: to
the file in the repository's web view when mkdocs.yml sets `repo_url`, else to the path
written as code, so that the site shows where the file is instead of a dead link.
"""
import os
import re

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger(__name__)

# [text](../path#anchor) or ![alt](../path): a relative link that leaves docs/.
LINK = re.compile(r"(!?)\[([^\]]*)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def _target(page_path, docs_dir, link):
    """The link's target as a path relative to the repository root, or None if it stays in docs/."""
    root = os.path.dirname(os.path.abspath(docs_dir))
    target = os.path.normpath(os.path.join(os.path.dirname(page_path), link))
    if target == os.path.abspath(docs_dir) or target.startswith(os.path.abspath(docs_dir) + os.sep):
        return None
    return os.path.relpath(target, root)


def on_page_markdown(markdown, page, config, files):
    """Check every link out of docs/ and rewrite it for the site."""
    repo_url = (config.get("repo_url") or "").rstrip("/")
    branch = config.get("extra", {}).get("repo_branch", "main")

    def rewrite(match):
        image, text, link, anchor = match.group(1), match.group(2), match.group(3), match.group(4) or ""
        path = _target(page.file.abs_src_path, config["docs_dir"], link)
        if path is None:
            return match.group(0)
        root = os.path.dirname(os.path.abspath(config["docs_dir"]))
        if path.startswith("..") or not os.path.exists(os.path.join(root, path)):
            log.warning("Doc file '%s' links '%s', which is not a file of the repository", page.file.src_uri, link)
            return match.group(0)
        kind = "tree" if os.path.isdir(os.path.join(root, path)) else "blob"
        if repo_url:
            if image:
                return f"![{text}]({repo_url}/raw/{branch}/{path})"
            return f"[{text}]({repo_url}/{kind}/{branch}/{path}{anchor})"
        if image:  # no web view to show it from: name the file
            return f"*{text}* (`{path}`)"
        return f"{text} (`{path}`)" if text and text.strip("`") != path else f"`{path}`"

    return LINK.sub(rewrite, markdown)
