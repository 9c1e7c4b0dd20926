"""The official openai client against a running `calm serve` (m_B with a chat template; see real-clients.sh).

Completions (text and token-id prompts), chat, streaming (joined chunks equal the non-streamed text), logprobs,
and errors mapped to the client's exception types. Exits non-zero on the first mismatch.
"""
import sys
import time

import httpx
import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        sys.exit("FAILED: " + what)
    checks += 1


models = client.models.list().data
check(len(models) == 1 and models[0].object == "model" and models[0].owned_by == "calm4j", f"models: {models}")
model = models[0].id

# completions: a text prompt and the same prompt as token ids
r = client.completions.create(model=model, prompt="<s>250-41=", max_tokens=4, temperature=0)
text = r.choices[0].text
check(r.object == "text_completion" and r.usage.prompt_tokens == 8, f"completion: {r}")
ids = httpx.post(base + "/tokenize", json={"prompt": "<s>250-41="},
                 headers={"Authorization": "Bearer " + key}).json()["tokens"]
r2 = client.completions.create(model=model, prompt=ids, max_tokens=4, temperature=0)
check(r2.choices[0].text == text, f"token-id prompt: {r2.choices[0].text!r} != {text!r}")
check(text == "209", f"m_B computes 250-41=209, got {text!r}")

# several prompts, n, seed: choices in request order, a seed reproduces
many = client.completions.create(model=model, prompt=["<s>3+4=", "<s>12+30="], max_tokens=3, temperature=0.9,
                                 seed=11, n=2)
again = client.completions.create(model=model, prompt=["<s>3+4=", "<s>12+30="], max_tokens=3, temperature=0.9,
                                  seed=11, n=2)
check([c.index for c in many.choices] == [0, 1, 2, 3], "choice indices")
check([c.text for c in many.choices] == [c.text for c in again.choices], "seeded sampling reproduces")

# echo + logprobs as lm-evaluation-harness asks
e = client.completions.create(model=model, prompt=ids, max_tokens=1, temperature=0, echo=True, logprobs=1)
lp = e.choices[0].logprobs
check(lp.token_logprobs[0] is None and len(lp.tokens) == len(ids) + 1, f"echo logprobs: {lp}")
check(all(x <= 0 for x in lp.token_logprobs[1:]), "log-probabilities are <= 0")

# streaming: joined chunks equal the non-streamed text, usage at the end
whole = client.completions.create(model=model, prompt="<s>77+7=", max_tokens=8, temperature=0)
chunks = list(client.completions.create(model=model, prompt="<s>77+7=", max_tokens=8, temperature=0, stream=True,
                                        stream_options={"include_usage": True}))
joined = "".join(c.choices[0].text for c in chunks if c.choices)
check(joined == whole.choices[0].text, f"stream {joined!r} != {whole.choices[0].text!r}")
check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens, "usage")

# a long answer (past the 2 s after which the server sends its headers and heartbeat spaces) parses as usual
t0 = time.time()
long = client.completions.create(model=model, prompt="<s>1", max_tokens=60, n=16, temperature=0,
                                 extra_body={"ignore_eos": True})
check(len(long.choices) == 16 and long.usage.completion_tokens == 16 * 60, f"long answer: {long.usage}")
print(f"a 16 x 60-token answer took {time.time() - t0:.1f} s")

# chat with the model's template, streamed too
msgs = [{"role": "user", "content": "250-41"}]
c = client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0)
check(c.choices[0].message.role == "assistant" and c.choices[0].message.content == "209",
      f"chat: {c.choices[0].message}")
streamed = "".join((ch.choices[0].delta.content or "") for ch in
                   client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0, stream=True)
                   if ch.choices)
check(streamed == c.choices[0].message.content, f"chat stream {streamed!r}")

# errors: the client's exception types, with OpenAI's body
for call, exc, code in [
    (lambda: client.completions.create(model=model, prompt="a" * 100, max_tokens=1), openai.BadRequestError,
     "context_length_exceeded"),
    (lambda: client.completions.create(model="gpt-4", prompt="a"), openai.NotFoundError, "model_not_found"),
    (lambda: client.completions.create(model=model, prompt="a", logprobs=50), openai.BadRequestError, None),
    (lambda: openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list(),
     openai.AuthenticationError, "invalid_api_key"),
]:
    try:
        call()
        check(False, f"expected {exc.__name__}")
    except exc as err:
        check(err.code == code or code is None, f"{exc.__name__} code {err.code!r} != {code!r}")
        check(isinstance(err.body, dict) and "message" in err.body, f"error body {err.body}")

print(f"openai client: {checks} checks passed")
