"""The worked example of the README's "Your own data": files and a mixture file.

  python -c "from midtrain_jax.data.mixtures.corpora import user_example as u; u.write('my_data')"

writes, from text on this machine (no download):

  web/part-0.jsonl.gz, web/part-1.jsonl   paragraphs of this package's sources ({"text"})
  qa.parquet                              stdlib docstrings as {"question", "answer"}
  chat.jsonl.zst                          the same kind as {"messages": [{role, content}]}
  code.jsonl                              top-level blocks of stdlib modules ({"text"})
  mix.yaml                                the mixture over them (stages included)
"""
import gzip
import json
import pathlib
import sysconfig

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from midtrain_jax.data.mixtures.corpora import demo

WEIGHTS = {"my_web": 0.4, "my_qa": 0.2, "my_chat": 0.2, "my_code": 0.2}

_YAML = """\
# Your own data: a mixture of four tasks (README "Your own data").
name: my_mix
description: Worked example of the README, made by midtrain_jax.data.mixtures.corpora.user_example
tasks:
  my_web:  {{files: ["web/*.jsonl*"], capability: web, weight: {my_web}, max_epochs: 4,
            licence: "as midtrain_jax", provenance: "paragraphs of midtrain_jax sources"}}
  my_qa:   {{files: ["qa.parquet"], capability: qa, weight: {my_qa}, max_epochs: 4,
            template: "Question: {{question}}\\nAnswer: {{answer}}", licence: PSF-2.0}}
  my_chat: {{files: ["chat.jsonl.zst"], capability: instruction, weight: {my_chat},
            max_epochs: 4, chat_template: chatml, licence: PSF-2.0}}
  my_code: {{files: ["code.jsonl"], capability: code, fim: true, weight: {my_code},
            max_epochs: 4, licence: PSF-2.0}}
stages:   # Web only at first, then the weights above from step {switch_step}.
  - {{start: 0, weights: {{my_web: 1.0}}}}
  - {{start: {switch_step}, weights: {weights}}}
"""


def _web_paragraphs() -> list[str]:
  root = pathlib.Path(__file__).resolve().parents[2]
  return [p for path in sorted(root.rglob("*.py"))
          for p in path.read_text(encoding="utf-8").split("\n\n") if len(p) > 200]


def _code_blocks(limit: int = 1500) -> list[str]:
  # Top-level definitions are separated by two blank lines (PEP 8): small documents.
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  blocks = []
  for path in sorted(root.glob("*.py")):
    blocks += [b.strip() for b in path.read_text(encoding="utf-8", errors="replace")
               .split("\n\n\n") if 200 <= len(b.strip()) <= 4000]
    if len(blocks) >= limit:
      break
  return blocks[:limit]


def _jsonl(records: list[dict]) -> bytes:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write(folder: str | pathlib.Path, switch_step: int = 2000) -> str:
  """Writes the example's data files and `mix.yaml` into `folder`.

  Args:
    folder: where to write (created).
    switch_step: training step at which the second weight stage starts.

  Returns:
    The path of mix.yaml.
  """
  out = pathlib.Path(folder)
  (out / "web").mkdir(parents=True, exist_ok=True)
  web = [{"text": p} for p in _web_paragraphs()]
  half = len(web) // 2
  (out / "web" / "part-0.jsonl.gz").write_bytes(gzip.compress(_jsonl(web[:half]), mtime=0))
  (out / "web" / "part-1.jsonl").write_bytes(_jsonl(web[half:]))
  pairs = list(demo._docstring_pairs())  # The demo corpus' QA source, as records.
  qa = pairs[0::2]
  pq.write_table(pa.Table.from_pylist(qa), out / "qa.parquet")
  chat = [{"messages": [{"role": "user", "content": p["question"]},
                        {"role": "assistant", "content": p["answer"]}]} for p in pairs[1::2]]
  (out / "chat.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(chat)))
  (out / "code.jsonl").write_bytes(_jsonl([{"text": b} for b in _code_blocks()]))
  weights = "{" + ", ".join(f"{k}: {v}" for k, v in WEIGHTS.items()) + "}"
  path = out / "mix.yaml"
  path.write_text(_YAML.format(switch_step=switch_step, weights=weights, **WEIGHTS))
  return str(path)
