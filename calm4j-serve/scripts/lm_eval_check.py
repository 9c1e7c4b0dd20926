"""lm-evaluation-harness's `local-completions` against a running `calm serve`, on two tasks defined in local files
(YAML + JSONL, no hub): a loglikelihood task and a generate_until task over the same examples. The harness's scores
must equal what `calm eval` computed on the same data (its JSON results are passed in).

usage: lm_eval_check.py BASE_URL MODEL DATA.jsonl CALM_PERPLEXITY.json CALM_EXACT.json WORKDIR
(the server's API key, if any, in OPENAI_API_KEY: the harness sends it to the completions and the tokenizer)
"""
import json
import math
import os
import sys

base, model, data, ppl_file, exact_file, work = sys.argv[1:7]
calm_ppl = json.load(open(ppl_file))
calm_exact = json.load(open(exact_file))
n_docs = sum(1 for line in open(data) if line.strip())

tasks = os.path.join(work, "tasks")
os.makedirs(tasks, exist_ok=True)
common = f"""dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{completion}}}}"
target_delimiter: ""
"""
with open(os.path.join(tasks, "calm_sums_ll.yaml"), "w") as f:
    f.write("task: calm_sums_ll\noutput_type: loglikelihood\n" + common + """metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
with open(os.path.join(tasks, "calm_sums_gen.yaml"), "w") as f:
    f.write("task: calm_sums_gen\noutput_type: generate_until\n" + common + """generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 3
  do_sample: false
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")

from lm_eval import simple_evaluate          # noqa: E402  (after the task files exist)
from lm_eval.tasks import TaskManager        # noqa: E402

out = simple_evaluate(
    model="local-completions",
    model_args=f"model={model},base_url={base}/v1/completions,tokenizer_backend=remote,tokenized_requests=True,"
               f"num_concurrent=4,max_retries=1,max_length=64"
               + (f",auth_token={os.environ['OPENAI_API_KEY']}" if os.environ.get("OPENAI_API_KEY") else ""),
    tasks=["calm_sums_ll", "calm_sums_gen"],
    task_manager=TaskManager(include_path=tasks),
)
ll = out["results"]["calm_sums_ll"]
gen = out["results"]["calm_sums_gen"]
print("harness:", json.dumps({"calm_sums_ll": ll, "calm_sums_gen": gen}, default=str))
print("calm eval:", json.dumps({"perplexity": calm_ppl, "exact": calm_exact}))

# The harness reports exp(-mean over documents of each continuation's summed log-likelihood); calm eval the mean
# loss per target token over the same continuations. Both are sums of the same per-token log-probabilities.
harness_total = n_docs * math.log(ll["perplexity,none"])
calm_total = calm_ppl["mean_loss"] * calm_ppl["tokens"]
failures = []
if abs(harness_total - calm_total) > 1e-4 * max(1.0, calm_ppl["tokens"]):
    failures.append(f"total negative log-likelihood: harness {harness_total:.6f}, calm eval {calm_total:.6f}")
if abs(ll["acc,none"] - calm_exact["accuracy"]) > 1e-12:
    failures.append(f"greedy (harness acc) {ll['acc,none']} != calm eval exact {calm_exact['accuracy']}")
if abs(gen["exact_match,none"] - calm_exact["accuracy"]) > 1e-12:
    failures.append(f"generate_until exact_match {gen['exact_match,none']} != calm eval exact {calm_exact['accuracy']}")
if failures:
    sys.exit("FAILED: " + "; ".join(failures))
print(f"lm-eval: {n_docs} documents; total NLL harness {harness_total:.6f} = calm eval {calm_total:.6f}; "
      f"acc {ll['acc,none']:.4f} = exact_match {gen['exact_match,none']:.4f} = calm eval exact {calm_exact['accuracy']:.4f}")
