"""lib/vmx_tokenizer against tiktoken's own o200k_base encoder.

Every sample of a varied corpus (code, many scripts, emoji sequences, long
prompts, whitespace and digit runs, contractions in odd cases, long pieces,
random Unicode and random bytes) is encoded by build/tools/vmx-tokenize and
by tiktoken's WASM build (tools/tokenizer/reference.mjs): the token ids must
be the same.  Bytes that are not UTF-8 go to tiktoken decoded with U+FFFD, as
the C counter treats them.  Random Unicode is drawn from code points this
Python's Unicode assigns; every code point is then checked alone and in a
small context.  The chat estimate is checked against the cookbook's
worked examples and against the recipe computed here with tiktoken's counts.
"""
import json
import random
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "build" / "tools" / "vmx-tokenize"
RANKS = ROOT / "build" / "o200k_base.tiktoken"
REFERENCE = ROOT / "tools" / "tokenizer" / "reference.mjs"

SEED = 20240513

CODE = [
    '#include <stdio.h>\n\nint\nmain(void)\n{\n    printf("%d\\n", 42);\n    return 0;\n}\n',
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\r\n",
    "const xs = [1, 2, 3].map((x) => x ** 2); // squares\n\tconsole.log(`${xs}`);",
    "fn main() { let v: Vec<u64> = (0..10).collect(); println!(\"{:?}\", v); }",
    "SELECT id, name FROM users WHERE created_at >= '2024-01-01' ORDER BY id DESC;",
    "<div class=\"a\"><p>Hello&nbsp;world</p></div>\n<!-- comment -->",
    "for f in *.c; do gcc -O2 -Wall \"$f\" -o \"${f%.c}\" || exit 1; done",
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}',
    "    if (x != NULL &&\n        y->z[3] <<= 2)\n            return -EINVAL;\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"héllo\") }\n",
]

SCRIPTS = [
    "我们今天去公园散步，天气非常好。人工智能正在改变世界。",
    "東京は日本の首都です。ひらがなとカタカナ、そして漢字。",
    "안녕하세요. 오늘 날씨가 정말 좋네요! 한국어 토큰화 테스트.",
    "مرحبا بالعالم! هذه جملة باللغة العربية مع أرقام ١٢٣٤٥.",
    "नमस्ते दुनिया। यह हिंदी में एक वाक्य है, जिसमें मात्राएँ हैं।",
    "Привет, мир! Это предложение на русском языке.",
    "Γειά σου Κόσμε· ελληνικά με τόνους και διαλυτικά ϊ ΐ.",
    "שלום עולם, זה משפט בעברית עם ניקוד: שָׁלוֹם.",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ơ ư đ.",
    "Ǆemal ǅemal ǆemal — titlecase digraphs, ﬁ ligature, Ⅻ numerals.",
    "e\u0301 a\u0308 o\u0303\u0323 combining marks, Z\u0351\u0316\u0359algo",
]

EMOJI = [
    "👍👍🏻👍🏽👍🏿 thumbs",
    "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag, 🧑‍🤝‍🧑",
    "🇫🇷🇯🇵🇺🇸 flags and keycaps 1️⃣ #️⃣ ©️",
    "smile😀!😀😀 ok👌🏼.",
]

ODD = [
    "I'M YOU'RE we'Ve they'LL she'D it'S don'T",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
    "CAN'T can't Can'T cAN't ABC'sdef abc'S'S",
    "la\u017f'\u017f x'\u017fy  Kelvin'\u212a",
    "<|endoftext|> and <|endofprompt|> as plain text",
    "1234567890 12,345.67 3.14159 -42 1e10 0x1F 007 ١٢٣ ١٢٣٤ 𝟙𝟚𝟛𝟜 ①②③ ½",
    "   leading  and trailing   ", "\t\t\tx\n\n\n\ny\r\n\r\nz  \n  \n",
    "\u00a0nbsp\u00a0\u00a0x\u3000ideo\u3000\u3000y\u0085nel\u2028ls\u2029ps",
    "a/b/c\n/\n//\n\r\n/ ", "!!!???...;;; --- ***\n\n", "\ufeffBOM first", "",
    " ", "\n", "a", "\x00\x01\x02 control \x7f", "\ufffd\ufffd replacement",
]


def _build_ok():
    missing = [p for p in (TOOL, RANKS, ROOT / "tools/tokenizer/node_modules") if not p.exists()]
    assert not missing, f"run ./build.sh build first: {missing} missing"


def _assigned(rng, lo, hi):
    while True:
        cp = rng.randint(lo, hi)
        if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn":
            return chr(cp)


def _random_text(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice("abcXYZ '\n\t.,!?0123456789-_/\\\"()"))
        elif r < 0.55:
            out.append(_assigned(rng, 0x80, 0x2FFF))
        elif r < 0.7:
            out.append(_assigned(rng, 0x3000, 0xFFFF))
        elif r < 0.8:
            out.append(_assigned(rng, 0x10000, 0x3134F))
        else:
            out.append(rng.choice(SCRIPTS + EMOJI + ODD)[: rng.randint(1, 12)])
    return "".join(out)


def _long_samples(rng):
    words = " ".join(rng.choice(SCRIPTS + CODE + ODD) for _ in range(400))
    return [
        words,
        "a" * 5000,
        "ab" * 3000 + "Z",
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9000)),
        "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3000)) + "ab",
        "".join(rng.choice("0123456789") for _ in range(3000)),
        "".join(rng.choice("!@#$%^&*()[]{}<>") for _ in range(2000)) + "\n/\n",
        " " * 3000 + "x" + "\n" * 1000 + " \t" * 500,
        "".join(rng.choice("我们今天去公园散步天气非常好") for _ in range(3000)),
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
                for _ in range(6000)),
        "e" + "\u0301" * 2000,
        "🏽" * 700 + "👍" * 300,
        "<|endoftext|>" * 300,
    ]


def _invalid_samples(rng):
    fixed = [b"\xff", b"\x80abc", b"abc\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80",
             b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
             b"a\xe2\x28\xa1b", b"caf\xe9 cr\xe8me", b" \xa0 \xc2\xa0\xc2"]
    rand = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) for _ in range(300)]
    mixed = []
    for _ in range(300):
        s = bytearray(_random_text(rng, rng.randint(1, 40)).encode())
        for _ in range(rng.randint(1, 4)):
            s.insert(rng.randint(0, len(s)), rng.randrange(0x80, 0x100))
        mixed.append(bytes(s))
    return fixed + rand + mixed


def corpus():
    rng = random.Random(SEED)
    texts = CODE + SCRIPTS + EMOJI + ODD + _long_samples(rng)
    texts += [_random_text(rng, rng.randint(1, 80)) for _ in range(3000)]
    texts += ["".join(rng.choice(SCRIPTS + EMOJI + ODD + CODE) for _ in range(rng.randint(1, 6)))
              for _ in range(500)]
    return [t.encode() for t in texts] + _invalid_samples(rng)


def run(cmd, samples):
    data = "".join(s.hex() + "\n" for s in samples)
    out = subprocess.run(cmd, input=data, capture_output=True, text=True, check=True,
                         timeout=600).stdout
    lines = out.splitlines()
    assert len(lines) == len(samples), (cmd, len(lines), len(samples))
    return [[int(x) for x in line.split()] for line in lines]


def c_ids(samples):
    return run([str(TOOL), str(RANKS)], samples)


def reference_ids(samples):
    return run(["node", str(REFERENCE)], samples)


def assert_ids_equal(samples):
    """The ids of the C counter and of tiktoken are the same for every sample; ours."""
    ours, ref = c_ids(samples), reference_ids(samples)
    bad = [(s, a, b) for s, a, b in zip(samples, ours, ref) if a != b]
    for s, a, b in bad[:5]:
        print(f"sample {s[:80]!r}\n  ours {a[:40]}\n  tiktoken {b[:40]}")
    assert not bad, f"{len(bad)} of {len(samples)} samples differ"
    return ours


def test_ids_equal_tiktoken():
    _build_ok()
    samples = corpus()
    ours = assert_ids_equal(samples)
    for ids in ours:
        assert ids[0] == len(ids) - 1      # the count is the number of ids
    print(f"{len(samples)} samples, {sum(len(s) for s in samples)} bytes, "
          f"{sum(i[0] for i in ours)} tokens: equal")


def test_every_code_point_equals_tiktoken():
    """Every code point but the surrogates, alone and in a context that puts it before and
    after letters, a space, itself and a contraction ("X's XX a'X"): the classes generated
    from the pinned Unicode data split as tiktoken's regex engine does."""
    _build_ok()
    samples = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        x = chr(cp)
        samples.append(x.encode())
        samples.append(f"{x}'s {x}{x} a'{x}\n".encode())
    assert_ids_equal(samples)


COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that "
                                  "translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user",
     "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user",
     "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
                "for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean "
                                "for the client deliverable."},
]

COOKBOOK_TOOLS = [{"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "description": "The unit of temperature to return",
                 "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}]

COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions "
                                  "about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def estimate(request):
    out = subprocess.run([str(TOOL), str(RANKS), "--chat"], input=json.dumps(request),
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return int(out)


@pytest.mark.parametrize("request_, expected", [
    ({"model": "gpt-4o", "messages": COOKBOOK_MESSAGES}, 124),
    ({"model": "gpt-4o", "messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}, 101),
])
def test_chat_estimate_cookbook(request_, expected):
    """The prompt tokens the cookbook's recipe and the API report for gpt-4o."""
    _build_ok()
    assert estimate(request_) == expected


def recipe(messages, count):
    """The cookbook's num_tokens_from_messages for string-valued messages."""
    total = 3
    for m in messages:
        total += 3 + sum(count(v) for v in m.values()) + ("name" in m)
    return total


def test_chat_estimate_recipe_with_tiktoken_counts():
    _build_ok()
    rng = random.Random(SEED + 1)
    requests = []
    for _ in range(40):
        msgs = []
        for _ in range(rng.randint(1, 6)):
            m = {"role": rng.choice(["system", "user", "assistant"]),
                 "content": _random_text(rng, rng.randint(0, 60))}
            if rng.random() < 0.3:
                m["name"] = rng.choice(["alice", "Bob_2", "x"])
            msgs.append(m)
        requests.append(msgs)
    strings = sorted({v for msgs in requests for m in msgs for v in m.values()})
    counts = dict(zip(strings, (ids[0] for ids in reference_ids([s.encode() for s in strings]))))
    for msgs in requests:
        assert estimate({"model": "gpt-4o", "messages": msgs}) == recipe(msgs, counts.get)
