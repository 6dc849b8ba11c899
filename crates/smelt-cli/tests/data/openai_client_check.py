"""Drives `smelt serve` with the official OpenAI Python client (the outside oracle for the API
shape): models, completion, chat, streaming chat with usage, stop strings, n > 1,
log-probabilities with their alternatives (top_logprobs), echo scoring the prompt, vLLM's
/tokenize and /detokenize, JSON mode, structured outputs (a pydantic model through the client's
parse(), with a union, a pattern, a date and bounds; vLLM's guided_json, guided_choice and guided_regex), forced tool calls (named and required), logit_bias and the penalties, min_tokens and
stop_token_ids, and the error cases. Usage: python openai_client_check.py BASE_URL API_KEY MODEL"""

import sys

import openai

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
c = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)

assert [m.id for m in c.models.list().data] == [model]

r = c.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
text = r.choices[0].text
assert "Paris" in text, text
assert r.choices[0].finish_reason == "length"
assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0
assert r.usage.total_tokens == r.usage.prompt_tokens + 8

# A stop string cuts the text before it.
r = c.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                         temperature=0, stop=["Paris"])
assert r.choices[0].finish_reason == "stop" and "Paris" not in r.choices[0].text
assert text.startswith(r.choices[0].text)

messages = [{"role": "user", "content": "What is the capital of France?"}]
r = c.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
whole = r.choices[0].message.content
assert r.choices[0].message.role == "assistant" and whole, r

# Content as a list of text parts is the same prompt as its text.
parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
r = c.chat.completions.create(model=model, messages=parts, max_tokens=12, temperature=0)
assert r.choices[0].message.content == whole, r

# Streaming gives the same text, then a usage chunk, then [DONE] (the client stops there).
stream = c.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                   stream=True, stream_options={"include_usage": True})
pieces, usage, finish, roles = [], None, None, []
for chunk in stream:
    assert chunk.object == "chat.completion.chunk"
    if chunk.choices:
        d = chunk.choices[0].delta
        if d.role:
            roles.append(d.role)
        pieces.append(d.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(pieces) == whole, (pieces, whole)
assert roles == ["assistant"] and finish == r.choices[0].finish_reason
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens

# n > 1 with a seed: n choices, reproducible.
a = c.completions.create(model=model, prompt="Once upon a time", max_tokens=6, n=3,
                         temperature=0.9, seed=5)
b = c.completions.create(model=model, prompt="Once upon a time", max_tokens=6, n=3,
                         temperature=0.9, seed=5)
assert sorted(ch.index for ch in a.choices) == [0, 1, 2]
assert [ch.text for ch in a.choices] == [ch.text for ch in b.choices]
assert a.usage.completion_tokens == 18

# Several prompts in one request: n choices each, numbered prompt by prompt; greedy, each
# prompt's choices equal it asked alone; the usage counts every prompt once.
two = ["The capital of France is", "Once upon a time"]
r = c.completions.create(model=model, prompt=two, max_tokens=5, n=2, temperature=0)
by_index = {ch.index: ch.text for ch in r.choices}
assert sorted(by_index) == [0, 1, 2, 3], by_index
alone = [c.completions.create(model=model, prompt=p, max_tokens=5, temperature=0) for p in two]
assert [by_index[i] for i in range(4)] == [a.choices[0].text for a in alone for _ in range(2)]
assert r.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone), r.usage
assert r.usage.completion_tokens == 20
# ... as token ids, echoed.
ids2 = [[504, 3575, 282], [4649, 314]]
r = c.completions.create(model=model, prompt=ids2, max_tokens=1, echo=True, temperature=0)
assert len(r.choices) == 2 and all(ch.text for ch in r.choices)

# Log-probabilities of the chosen tokens.
r = c.completions.create(model=model, prompt="Hello", max_tokens=3, temperature=0, logprobs=1)
lp = r.choices[0].logprobs
assert len(lp.tokens) == 3 and all(v <= 0 for v in lp.token_logprobs)
# ... with k alternatives per token: greedy picks the most likely, offsets follow the texts.
r = c.completions.create(model=model, prompt="Hello", max_tokens=4, temperature=0, logprobs=3)
lp = r.choices[0].logprobs
assert [len(t) for t in lp.top_logprobs] == [3] * 4, lp.top_logprobs
for tok, p, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
    best = max(top.values())
    assert abs(p - best) < 1e-6 and top.get(tok) == p, (tok, p, top)
assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)], lp.text_offset
# Echo with logprobs scores the prompt (what evaluation harnesses send, max_tokens 0): the
# first token has no value; generating after it leaves the prompt's scores unchanged.
prompt = "The capital of France is Paris"
r = c.completions.create(model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=2)
lp = r.choices[0].logprobs
assert r.choices[0].text == prompt and "".join(lp.tokens) == prompt, (r.choices[0].text, lp.tokens)
assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
assert len(lp.tokens) == r.usage.prompt_tokens and r.usage.completion_tokens == 0
assert all(v <= 0 for v in lp.token_logprobs[1:]) and r.choices[0].finish_reason == "length"
g = c.completions.create(model=model, prompt=prompt, max_tokens=3, echo=True, logprobs=2,
                         temperature=0)
glp = g.choices[0].logprobs
assert g.choices[0].text.startswith(prompt) and len(glp.tokens) == len(lp.tokens) + 3
assert glp.token_logprobs[:len(lp.tokens)] == lp.token_logprobs
# ... with the prompt as token ids (lm-eval's form).
ids = [504, 3575, 282, 4649, 314, 7042]
r = c.completions.create(model=model, prompt=ids, max_tokens=0, echo=True, logprobs=0)
assert len(r.choices[0].logprobs.token_logprobs) == len(ids)
# Streamed, the first chunk is the prompt with its scores.
stream = c.completions.create(model=model, prompt=prompt, max_tokens=2, echo=True, logprobs=1,
                              temperature=0, stream=True)
chunks = [ch for ch in stream if ch.choices]
assert chunks[0].choices[0].text == prompt
assert chunks[0].choices[0].logprobs.token_logprobs == lp.token_logprobs
assert "".join(ch.choices[0].text for ch in chunks) == g.choices[0].text[:len(prompt)] + \
    "".join(ch.choices[0].text for ch in chunks[1:])
# Chat's top_logprobs: sorted, the chosen (greedy) token first, bytes that decode to the token.
r = c.chat.completions.create(model=model, messages=messages, max_tokens=5, temperature=0,
                              logprobs=True, top_logprobs=4)
content = r.choices[0].logprobs.content
assert "".join(e.token for e in content) == r.choices[0].message.content
for e in content:
    alts = e.top_logprobs
    assert len(alts) == 4 and alts[0].token == e.token and alts[0].logprob == e.logprob, e
    assert all(a.logprob >= b.logprob for a, b in zip(alts, alts[1:])), alts
    assert bytes(e.bytes).decode("utf-8", "replace") == e.token
# Streamed, each chunk carries its token's alternatives.
stream = c.chat.completions.create(model=model, messages=messages, max_tokens=5, temperature=0,
                                   logprobs=True, top_logprobs=2, stream=True)
streamed = [e for ch in stream if ch.choices and ch.choices[0].logprobs
            for e in ch.choices[0].logprobs.content]
assert [(e.token, [a.token for a in e.top_logprobs]) for e in streamed] == \
    [(e.token, [a.token for a in e.top_logprobs[:2]]) for e in content], streamed

# JSON mode: the text is one JSON object (or, cut by max_tokens, the start of one).
import json as _json
for seed in range(3):
    r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "A cat as JSON"}],
                                  max_tokens=64, temperature=1.0, seed=seed,
                                  response_format={"type": "json_object"})
    ch = r.choices[0]
    if ch.finish_reason == "stop":
        assert isinstance(_json.loads(ch.message.content), dict), ch.message.content
    else:
        assert ch.finish_reason == "length" and ch.message.content.lstrip().startswith("{")

# Structured outputs: the client's own parse() sends the pydantic model's strict JSON schema
# and reads the answer back into the model, so pydantic checks it.
# The model has a union of two objects (anyOf of $refs, told apart by their "kind" const).
from typing import Literal, Optional, Union
import pydantic

class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: int

class Dog(pydantic.BaseModel):
    kind: Literal["dog"]
    good: bool

class Pet(pydantic.BaseModel):
    name: str
    animal: Union[Cat, Dog]
    age: int
    nickname: Optional[str]

def parse_four(model_cls, ask):
    """How many of four seeds close an answer that parse() reads into `model_cls`."""
    parsed = 0
    for seed in range(4):
        try:
            r = c.chat.completions.parse(model=model, messages=[{"role": "user", "content": ask}],
                                         max_tokens=96, temperature=1.0, seed=seed, response_format=model_cls)
        except openai.LengthFinishReasonError:
            continue
        assert r.choices[0].finish_reason == "stop" and isinstance(r.choices[0].message.parsed, model_cls), r
        parsed += 1
    assert parsed > 0, f"no {model_cls.__name__} closed within 96 tokens"
    return parsed

parse_four(Pet, "A pet as JSON")
# Patterns, formats, bounds and tuples (pydantic's Field(pattern=..., min_length=...),
# datetime.date, ge/le, tuple[int, int]): parse() has pydantic check every field of the answer.
import datetime

class Booking(pydantic.BaseModel):
    code: str = pydantic.Field(pattern=r"^[A-Z]{3}-[0-9]{3}$")
    day: datetime.date
    guests: int = pydantic.Field(ge=1, le=8)
    rating: float = pydantic.Field(ge=0, le=5)
    tag: str = pydantic.Field(pattern=r"^[a-z]+$", min_length=2, max_length=8)
    nights: tuple[int, int]

booked = parse_four(Booking, "A hotel booking as JSON")
print(f"bookings parsed and validated by pydantic: {booked} of 4", file=sys.stderr)
# vLLM's guided_json on a legacy completion, greedy: an instance of the schema.
schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                           "sure": {"type": "boolean"}}, "required": ["city", "sure"]}
r = c.completions.create(model=model, prompt="The capital of France, as JSON:", max_tokens=48,
                         temperature=0, extra_body={"guided_json": schema})
v = _json.loads(r.choices[0].text)
assert r.choices[0].finish_reason == "stop" and list(v) == ["city", "sure"], r.choices[0].text
assert isinstance(v["city"], str) and len(v["city"]) <= 16 and isinstance(v["sure"], bool), v
# The schema may also come as its text; the same greedy answer.
r2 = c.completions.create(model=model, prompt="The capital of France, as JSON:", max_tokens=48,
                          temperature=0, extra_body={"guided_json": _json.dumps(schema)})
assert r2.choices[0].text == r.choices[0].text, (r2.choices[0].text, r.choices[0].text)

# vLLM's guided_choice (and structured_outputs.choice): the answer is exactly one of them.
for extra in ({"guided_choice": ["positive", "negative"]},
              {"structured_outputs": {"choice": ["positive", "negative"]}}):
    r = c.chat.completions.create(model=model, max_tokens=8, temperature=0, extra_body=extra,
                                  messages=[{"role": "user", "content": "I loved this film! Sentiment?"}])
    assert r.choices[0].message.content in ("positive", "negative"), r
    assert r.choices[0].finish_reason == "stop", r
r = c.completions.create(model=model, prompt="Is the sky blue? Answer:", max_tokens=8, temperature=0,
                         extra_body={"guided_choice": ["yes", "no"]})
assert r.choices[0].text in ("yes", "no"), r
# A choice may start another: the answer is still exactly one of them.
for seed in range(3):
    r = c.completions.create(model=model, prompt="Is the sky blue? Answer:", max_tokens=8, temperature=1.0,
                             seed=seed, extra_body={"guided_choice": ["yes", "yes, always", "no"]})
    assert r.choices[0].text in ("yes", "yes, always", "no") and r.choices[0].finish_reason == "stop", r

# vLLM's guided_regex (and structured_outputs.regex): the whole answer matches, and the end of
# turn may come wherever it does (it must where nothing more could).
import re
for extra, pat in (({"guided_regex": r"(yes|no), because [a-z ]{3,40}\."}, r"(yes|no), because [a-z ]{3,40}\."),
                   ({"structured_outputs": {"regex": r"[0-9]{3}-[0-9]{4}"}}, r"[0-9]{3}-[0-9]{4}")):
    r = c.chat.completions.create(model=model, max_tokens=40, temperature=0, extra_body=extra,
                                  messages=[{"role": "user", "content": "Is the sky blue? Say why."}])
    assert re.fullmatch(pat, r.choices[0].message.content), r
    assert r.choices[0].finish_reason == "stop", r
r = c.completions.create(model=model, prompt="Count: 1 2 3 4 5 6 7 8 9 10 11 12. Number:", max_tokens=24,
                         temperature=0, extra_body={"guided_regex": "[0-9 ]+"})
assert re.fullmatch("[0-9 ]+", r.choices[0].text), r

# vLLM's /tokenize and /detokenize: the same count as the usage, and back to the text.
import json, urllib.request
def post(path, body):
    r = urllib.request.Request(base + path, json.dumps(body).encode(),
                               {"content-type": "application/json", "authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(r))
t = post("/tokenize", {"model": model, "prompt": "The capital of France is"})
u = c.completions.create(model=model, prompt="The capital of France is", max_tokens=1).usage
assert t["count"] == len(t["tokens"]) == u.prompt_tokens, (t, u)
assert post("/detokenize", {"tokens": t["tokens"]})["prompt"] == "The capital of France is"
t = post("/tokenize", {"messages": messages})
u = c.chat.completions.create(model=model, messages=messages, max_tokens=1).usage
assert t["count"] == u.prompt_tokens, (t, u)

# Forced tool calls, as vLLM serves them: a named function's arguments meet its parameters
# schema; "required" gives one or more calls of the listed tools; streamed, each call's
# arguments come in pieces as they are written. The calls (content null) and a tool's answer then go back in as messages.
weather = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
clock = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}}}
q = [{"role": "user", "content": "What is the weather in Paris?"}]
r = c.chat.completions.create(model=model, messages=q, tools=[weather, clock], max_tokens=48, temperature=0,
                              tool_choice={"type": "function", "function": {"name": "get_weather"}})
ch = r.choices[0]
assert ch.finish_reason == "stop" and ch.message.content is None, ch
call = ch.message.tool_calls[0]
args = json.loads(call.function.arguments)
assert call.function.name == "get_weather" and list(args) == ["city", "unit"], call
assert args["unit"] in ("celsius", "fahrenheit") and len(args["city"]) <= 24, args
with c.chat.completions.stream(model=model, messages=q, tools=[weather, clock], max_tokens=48, temperature=0,
                               tool_choice={"type": "function", "function": {"name": "get_weather"}}) as s:
    final = s.get_final_completion()
streamed = final.choices[0].message.tool_calls[0].function
assert (streamed.name, streamed.arguments) == (call.function.name, call.function.arguments), final
r = c.chat.completions.create(model=model, messages=q, tools=[weather, clock], tool_choice="required",
                              max_tokens=96, temperature=0)
ch = r.choices[0]
assert ch.finish_reason == "tool_calls" and ch.message.tool_calls, ch
for call in ch.message.tool_calls:
    want = {"get_weather": ["city", "unit"], "get_time": ["zone"]}[call.function.name]
    assert list(json.loads(call.function.arguments)) == want, call
whole = [(t.function.name, t.function.arguments) for t in ch.message.tool_calls]
# parallel_tool_calls=False: exactly one call.
one = c.chat.completions.create(model=model, messages=q, tools=[weather, clock], tool_choice="required",
                                max_tokens=96, temperature=0, parallel_tool_calls=False)
assert one.choices[0].finish_reason == "tool_calls" and len(one.choices[0].message.tool_calls) == 1, one
stream = c.chat.completions.create(model=model, messages=q, tools=[weather, clock], tool_choice="required",
                                   max_tokens=96, temperature=0, stream=True)
deltas = [d for chunk in stream if chunk.choices for d in chunk.choices[0].delta.tool_calls or []]
# Each call's id and name come once, then its arguments in pieces that add up to the whole.
got = {}
for d in deltas:
    if d.id:
        assert d.index not in got and d.function.name, d
        got[d.index] = [d.function.name, ""]
    assert d.index in got, d
    got[d.index][1] += d.function.arguments or ""
assert [tuple(got[k]) for k in sorted(got)] == whole, (got, whole)
assert len(deltas) > 2 * len(whole), f"{len(deltas)} deltas: the arguments did not stream"
# The client's own stream helper puts the pieces together the same way.
with c.chat.completions.stream(model=model, messages=q, tools=[weather, clock], tool_choice="required",
                               max_tokens=96, temperature=0) as s:
    final = s.get_final_completion()
assert [(t.function.name, t.function.arguments) for t in final.choices[0].message.tool_calls] == whole
assert final.choices[0].finish_reason == "tool_calls", final
# Cut by max_tokens, the calls begun come back with their arguments cut, streamed or not.
# (Before the first name is whole, the text so far comes back as content.)
begun = 0
for limit in (8, 16, 20, 24):
    cut = c.chat.completions.create(model=model, messages=q, tools=[weather, clock],
                                    tool_choice="required", max_tokens=limit, temperature=0)
    m = cut.choices[0].message
    assert cut.choices[0].finish_reason == "length", cut
    if m.tool_calls:
        assert m.content is None and m.tool_calls[0].function.name == whole[0][0], cut
        assert whole[0][1].startswith(m.tool_calls[0].function.arguments), cut
        begun += 1
    else:
        assert m.content.lstrip().startswith("["), cut
assert begun > 0, "no cut answer had begun a call"
# tool_choice "auto" (the default with tools; the server runs with --tool-call-parser hermes):
# the model's answer is read for <tool_call> blocks. SmolLM2 has no tool format of its own, so
# it answers in text, and guided_regex makes it write a Hermes call (text first) to read.
auto = c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=16, temperature=0)
assert auto.choices[0].message.tool_calls is None and auto.choices[0].message.content, auto
# Streamed, an auto answer still carries every token's log-probability.
lp_whole = c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=16, temperature=0,
                                     logprobs=True).choices[0].logprobs.content
lp_stream = [e for ch in c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=16,
                                                   temperature=0, logprobs=True, stream=True)
             if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
assert [e.token for e in lp_stream] == [e.token for e in lp_whole] and lp_whole, (lp_stream, lp_whole)
hermes = ('Let me look\\.\\n<tool_call>\\{"name": "get_weather", "arguments": '
          '\\{"city": "Paris", "unit": "celsius"\\}\\}</tool_call>')
auto = c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=192, temperature=0,
                                 extra_body={"guided_regex": hermes})
m = auto.choices[0].message
assert auto.choices[0].finish_reason == "tool_calls" and m.content == "Let me look.", auto
assert [(t.function.name, json.loads(t.function.arguments)) for t in m.tool_calls] == [
    ("get_weather", {"city": "Paris", "unit": "celsius"})], m
with c.chat.completions.stream(model=model, messages=q, tools=[weather], max_tokens=192, temperature=0,
                               extra_body={"guided_regex": hermes}) as s:
    final = s.get_final_completion()
fm = final.choices[0].message
assert (fm.content, final.choices[0].finish_reason) == (m.content, "tool_calls"), final
assert [(t.function.name, t.function.arguments) for t in fm.tool_calls] == [
    (t.function.name, t.function.arguments) for t in m.tool_calls], final
# Two calls written; parallel_tool_calls=False keeps the first, whole and streamed.
two_calls = hermes + '\\n<tool_call>\\{"name": "get_weather", "arguments": \\{"city": "Oslo", "unit": "celsius"\\}\\}</tool_call>'
both = c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=320, temperature=0,
                                 extra_body={"guided_regex": two_calls})
assert [json.loads(t.function.arguments)["city"] for t in both.choices[0].message.tool_calls] == ["Paris", "Oslo"], both
first = c.chat.completions.create(model=model, messages=q, tools=[weather], max_tokens=320, temperature=0,
                                  parallel_tool_calls=False, extra_body={"guided_regex": two_calls})
with c.chat.completions.stream(model=model, messages=q, tools=[weather], max_tokens=320, temperature=0,
                               parallel_tool_calls=False, extra_body={"guided_regex": two_calls}) as s:
    first_streamed = s.get_final_completion()
for r in (first, first_streamed):
    calls = r.choices[0].message.tool_calls
    assert [json.loads(t.function.arguments)["city"] for t in calls] == ["Paris"], r
    assert r.choices[0].finish_reason == "tool_calls", r
follow = q + [{"role": "assistant", "content": None,
               "tool_calls": [t.model_dump() for t in ch.message.tool_calls]},
              {"role": "tool", "tool_call_id": ch.message.tool_calls[0].id, "content": "18 C, sunny"}]
r = c.chat.completions.create(model=model, messages=follow, max_tokens=8, temperature=0)
assert r.choices[0].message.content, r

# Sampling controls: logit_bias bans or forces a token; frequency/presence penalties and vLLM's
# repetition_penalty change a repetitive greedy text; vLLM's min_tokens holds the end of turn
# back and stop_token_ids end the text.
tid = lambda text: post("/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"][0]
paris = c.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0,
                             logprobs=0).choices[0].logprobs.tokens
r = c.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0,
                         logit_bias={str(tid(paris[0])): -100}, logprobs=0)
assert r.choices[0].logprobs.tokens[0] != paris[0], (paris, r)
banana = tid(" banana")
r = c.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0,
                         logit_bias={str(banana): 100})
assert r.choices[0].text.startswith(" banana"), r
cat = "The cat sat on the mat. The cat sat on the mat. The cat"
plain = c.completions.create(model=model, prompt=cat, max_tokens=32, temperature=0).choices[0].text
assert "sat on the mat" in plain, plain
for extra in ({"frequency_penalty": 1.5}, {"presence_penalty": 1.5}, {"extra_body": {"repetition_penalty": 1.5}}):
    t = c.completions.create(model=model, prompt=cat, max_tokens=32, temperature=0, **extra).choices[0].text
    assert t != plain, (extra, t)
t = c.completions.create(model=model, prompt=cat, max_tokens=32, temperature=0,
                         extra_body={"repetition_penalty": 1.5}).choices[0].text
assert "sat on the mat" not in t, t
short = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say OK."}],
                                  max_tokens=64, temperature=0)
assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 20, short
held = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say OK."}],
                                 max_tokens=64, temperature=0, extra_body={"min_tokens": 20})
assert held.usage.completion_tokens >= 20, held
r = c.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0,
                         logit_bias={str(banana): 100}, extra_body={"stop_token_ids": [banana]})
assert r.choices[0].finish_reason == "stop" and r.choices[0].text == "", r

def expect(err, fn, code=None):
    try:
        fn()
    except err as e:
        if code is not None:
            assert e.code == code, (e.code, e)
        return
    raise AssertionError(f"expected {err.__name__}")

expect(openai.NotFoundError, lambda: c.completions.create(model="nope", prompt="x"), "model_not_found")
bad_key = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
expect(openai.AuthenticationError, lambda: bad_key.models.list(), "invalid_api_key")
expect(openai.BadRequestError,
       lambda: c.completions.create(model=model, prompt="x", max_tokens=10**6),
       "context_length_exceeded")
expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt="x", top_p=5))
expect(openai.BadRequestError, lambda: c.chat.completions.create(model=model, messages=[]))
expect(openai.BadRequestError, lambda: c.chat.completions.create(
    model=model, messages=messages, top_logprobs=2))
expect(openai.BadRequestError, lambda: c.chat.completions.create(
    model=model, messages=messages, logprobs=True, top_logprobs=21))
expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt="x", temperature=-1))
expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt="x", max_tokens=0))
expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt=["a"] * 5, n=16))
expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt=["a", ""]))
# A list with one prompt past the context is refused whole: nothing is left running.
expect(openai.BadRequestError,
       lambda: c.completions.create(model=model, prompt=[[504] * 4, [504] * 9000], n=4),
       "context_length_exceeded")
running = [l for l in urllib.request.urlopen(urllib.request.Request(
    base + "/metrics", headers={"authorization": "Bearer " + key})).read().decode().splitlines()
    if l.startswith("smelt:num_requests_running") or l.startswith("smelt:num_requests_waiting")]
assert running and all(l.endswith(" 0") for l in running), running
expect(openai.BadRequestError, lambda: c.completions.create(
    model=model, prompt="x", extra_body={"response_format": {"type": "json_object"}, "guided_json": schema}))
expect(openai.BadRequestError, lambda: c.completions.create(
    model=model, prompt="x", extra_body={"guided_regex": "a(?=b)"}))
for bad in ({"logit_bias": {"abc": 1}}, {"logit_bias": {"1": 101}}, {"presence_penalty": 3},
            {"frequency_penalty": -2.5}, {"extra_body": {"stop_token_ids": [10**9]}},
            {"max_tokens": 5, "extra_body": {"min_tokens": 20}}):
    expect(openai.BadRequestError, lambda: c.completions.create(model=model, prompt="x", **bad))
# A schema keyword smelt cannot hold the model to is refused, not ignored.
try:
    c.chat.completions.create(model=model, messages=messages, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}}}})
    raise AssertionError("multipleOf was accepted")
except openai.BadRequestError as e:
    assert "/properties/n" in str(e) and "multipleOf" in str(e), e
# So is a pattern that is not a regular expression, naming where it is.
try:
    c.chat.completions.create(model=model, messages=messages, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"id": {"type": "string", "pattern": "(?<=a)b"}}}}})
    raise AssertionError("a look-behind was accepted")
except openai.BadRequestError as e:
    assert "/properties/id/pattern" in str(e), e
# A function not among the tools, and a choice without tools, are 400s.
expect(openai.BadRequestError, lambda: c.chat.completions.create(
    model=model, messages=q, tools=[weather], tool_choice={"type": "function", "function": {"name": "nope"}}))
expect(openai.BadRequestError, lambda: c.chat.completions.create(model=model, messages=q, tool_choice="required"))
print("openai client: ok")
