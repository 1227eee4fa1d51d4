"""The examples of docs/plugins.md, "Testing a plugin" (the fixtures, the registry, the scripted
backend, scoring in the sandbox), run as a plugin author's test module with pytest: the
fixtures come from evolinstruct's own pytest plugin, as they do for an installed plugin."""

import re
import subprocess
import sys

from conftest import REPO


def test_the_testing_examples_in_docs_plugins_md_pass(tmp_path):
    text = (REPO / "docs/plugins.md").read_text()
    section = text.split("## Testing a plugin\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 4
    # The first example needs the example plugin's echo backend: leave it to that plugin's own tests
    # (tests/test_example_plugin.py runs them); the others are self-contained.
    for i, block in enumerate(blocks[1:], 1):
        (tmp_path / f"test_doc_example_{i}.py").write_text(block)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout, proc.stdout
