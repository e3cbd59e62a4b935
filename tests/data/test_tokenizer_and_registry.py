"""Tokenizers (demo SentencePiece, HF JSON), seqio registry and listing."""
import pickle
import subprocess
import sys

import grain
import numpy as np
import pytest

from midtrain_jax import logs
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog, seqio_tasks
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.data.reports import listing
from tests.data import demo_data


def _demo():
  preparation.ensure_demo_tokenizer(log=lambda _: None)
  return tokenizer_lib.load_tokenizer("demo_spm")


def test_demo_sentencepiece_reserves_special_and_fim_ids():
  tok = _demo()
  assert (tok.vocab_size, tok.pad_id, tok.eos_id, tok.bos_id) == (8192, 0, 1, 2)
  assert tok.fim_ids() == {"prefix": 4, "middle": 5, "suffix": 6, "pad": 7}
  code = "def f(x):\n\treturn x ** 2  # square\n\n"
  assert tok.decode(tok.encode(code)) == code
  assert tok.encode("a<|fim_prefix|>b").count(4) == 1  # One piece, never split.
  assert tokenizer_lib.vocab_size("demo_spm") == 8192


def test_tokenizers_are_lazy_and_picklable():
  tok = _demo()
  tok.encode("load the model")
  clone = pickle.loads(pickle.dumps(tok))
  assert clone._processor is None
  assert clone.encode("same ids") == tok.encode("same ids")


def test_hf_json_adapter_appends_missing_fim_sentinels(tmp_path):
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers, trainers
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>",
                                                                "<|padding|>"])
  hf.train_from_iterator(["hello world", "the quick brown fox"] * 50, trainer)
  path = tmp_path / "tok.json"
  hf.save(str(path))
  tok = tokenizer_lib.load_tokenizer(str(path))
  base = hf.get_vocab_size()
  assert tok.vocab_size == base + 4
  assert sorted(tok.fim_ids().values()) == list(range(base, base + 4))
  assert (tok.eos_id, tok.pad_id, tok.bos_id) == (0, 1, 0)
  assert tok.decode(tok.encode("hello fox")) == "hello fox"
  assert pickle.loads(pickle.dumps(tok)).encode("hello") == tok.encode("hello")


def test_demo_sequences_start_with_bos():
  tok = _demo()
  assert tok.adds_bos and tok.start_ids() == [2]
  assert tok.encode_prompt("def f(x):") == [2] + tok.encode("def f(x):")


@pytest.mark.parametrize("template, config, adds_bos", [
    (False, {}, False),                        # A bare vocabulary: nothing added.
    (True, {}, True),                          # The post-processor puts BOS first.
    (True, {"add_bos_token": False}, False),   # tokenizer_config.json overrides it,
    (False, {"add_bos_token": True}, True),    # either way.
])
def test_hf_bos_rule_and_the_files_transformers_reads(tmp_path, template, config, adds_bos):
  """`adds_bos`/`encode_prompt` of an HF tokenizer folder against transformers'
  AutoTokenizer. transformers 5 reads only tokenizer.json's post-processor, so
  it loads the files `with_ends` rewrites to the stated rule (unchanged when the
  config states none)."""
  import json

  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers, processors, trainers
  transformers = pytest.importorskip("transformers")
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<s>"])
  hf.train_from_iterator(["hello world", "the quick brown fox"] * 50, trainer)
  if template:
    hf.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
  tokenizer_config = json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                 "bos_token": "<s>", "eos_token": "<|endoftext|>", **config})
  for folder, text in ((tmp_path / "raw", hf.to_str()),
                       (tmp_path / "agreeing", tokenizer_lib.with_ends(hf.to_str(), 1, 0, config))):
    folder.mkdir()
    (folder / "tokenizer.json").write_text(text)
    (folder / "tokenizer_config.json").write_text(tokenizer_config)
  tok = tokenizer_lib.load_tokenizer(str(tmp_path / "raw" / "tokenizer.json"))
  assert tok.adds_bos is adds_bos and tok.start_ids() == ([1] if adds_bos else [])
  assert not tok.adds_eos
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "agreeing"))
  assert tok.encode_prompt("hello fox") == theirs("hello fox").input_ids
  assert pickle.loads(pickle.dumps(tok)).adds_bos is adds_bos


def test_catalog_mixtures_cover_the_required_shapes():
  demo = catalog.get_mixture("dolmino_demo")
  assert {catalog.TASKS[t].capability for t in demo.rates} == set(catalog.CAPABILITIES)
  olmo3 = catalog.get_mixture("dolmino_olmo3").rates
  assert olmo3["olmo3_web"] / sum(olmo3.values()) == pytest.approx(50 / 97)
  assert olmo3["olmo3_stack_edu_fim"] == 10.0 and olmo3["olmo3_tinymath"] == 5.0
  assert set(catalog.get_mixture("web_only").rates) == {
      t for t in demo.rates if catalog.TASKS[t].capability == "web"}
  for name, task in catalog.TASKS.items():
    if task.chat:  # Chat tasks are SFT probes' data, one mixture each, not anneal candidates.
      assert catalog.get_mixture(f"sft/{name}").rates == {name: 1.0}
    elif task.capability != "web":
      rates = catalog.get_mixture(f"microanneal/{name}").rates
      assert rates[name] == 0.5 and sum(rates.values()) == pytest.approx(1.0)
  assert catalog.get_mixture("microanneal:math_synthetic").name == "microanneal/math_synthetic"
  with pytest.raises(ValueError, match="Unknown mixture 'nope'"):
    catalog.get_mixture("nope")


def test_olmo3_tasks_need_a_source_location():
  from midtrain_jax import config as config_lib
  cfg = config_lib.data_config()
  with pytest.raises(ValueError, match="source_root"):
    catalog.get_task("olmo3_flan").files(cfg)
  cfg.source_root = "gs://bucket/dolmino/"
  assert catalog.get_task("olmo3_flan").files(cfg) == ["gs://bucket/dolmino/flan/*.jsonl*"]
  cfg.source_paths = {"olmo3_flan": "/data/flan/*.parquet"}
  assert catalog.get_task("olmo3_flan").files(cfg) == ["/data/flan/*.parquet"]


def test_seqio_tasks_match_prepared_shards():
  seqio = logs.quiet_import("seqio")
  assert set(map(seqio_tasks.seqio_name, catalog.MIXTURES)) <= set(seqio.MixtureRegistry.names())
  mixture = seqio.get_mixture_or_task("microanneal:math_synthetic")
  assert {t.name for t in mixture.tasks} == {"math_synthetic", "web_c4", "web_wikipedia",
                                             "web_openwebtext"}
  task = seqio.get_mixture_or_task("math_synthetic")
  first = next(task.get_dataset(split="train", sequence_length=None, shuffle=False)
               .as_numpy_iterator())["targets"]
  shard = f"{demo_data.prepared_dir()}/math_synthetic/train-00000.array_record"
  prepared = np.frombuffer(grain.sources.ArrayRecordDataSource([shard])[0], np.uint32)
  np.testing.assert_array_equal(first, prepared[1:])  # seqio adds no BOS.
  assert listing.task_metadata("math_synthetic")["capability"] == "math"


def test_list_command_prints_tasks_and_mixtures():
  out = subprocess.run([sys.executable, "-m", "midtrain_jax.data.mixtures", "--list"],
                       capture_output=True, text=True, check=True).stdout
  assert "code_python_stdlib" in out and "PSF-2.0" in out
  assert "microanneal/thinking_program_traces" in out
  assert "dolmino_olmo3" in out and "olmo3_web 0.515" in out
