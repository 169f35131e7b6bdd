"""The README runs top to bottom in a fresh folder: every file or run a command reads is in the
repository or written by an earlier command (placeholders for the user's own data aside)."""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).parents[1]
PLACEHOLDERS = ("path/to/", "Wan2.1-T2V-1.3B-Diffusers")      # the user's own videos and downloaded models
READS = ("--image", "--config", "--model", "--lora", "--vae")  # options whose value is a file or folder to read
POSITIONAL_READS = {"extend": 1, "interpolate": 1, "export": 1, "eval": 1}   # commands whose first argument is read


def commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    out = []
    for line in lines:
        for part in line.split("#")[0].split("&&"):
            words = shlex.split(part)
            if words and words[0] == "vidiff":
                out.append(words[1:])
    return out


def test_every_file_a_readme_command_reads_exists_or_an_earlier_command_writes_it():
    written, missing = set(), []
    for words in commands():
        reads = [words[i + 1] for i, w in enumerate(words[:-1]) if w in READS]
        if words and words[0] in POSITIONAL_READS and len(words) > 1 and not words[1].startswith("-"):
            reads.append(words[1])
        for path in reads:
            known = path == "default" or (ROOT / path).exists() or path.rstrip("/") in written
            if not known and not any(p in path for p in PLACEHOLDERS):
                missing.append(f"{' '.join(words[:2])}: '{path}'")
        outs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"]
        if words[:1] == ["export"] and len(words) > 2:
            outs.append(words[2])
        for out in outs:
            if out.rstrip("/") in written and "--resume" not in words and "--overwrite" not in words:
                missing.append(f"'{out}' is written twice (the second command would refuse to overwrite it)")
            written.add(out.rstrip("/"))
    assert not missing, missing
    assert len(commands()) > 15
