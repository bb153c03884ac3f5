"""Synthetic StackOverflow posts in the input format of example-get-started's ``prepare.py``.

The upstream project reads ``data/data.xml``: one ``<row .../>`` element per line, taken from
the StackOverflow ``Posts.xml`` dump (``Id``, ``Title``, ``Body`` with escaped HTML, ``Tags``
such as ``&lt;r&gt;&lt;ggplot2&gt;``), about 30% of them tagged ``<r>``. That data cannot be
fetched here, so this module writes posts of the same shape from a seeded generator: R posts
lean on R words, the others on Python, JavaScript and Java words, and all share common words
(and some R-ish words), so the classifier is good but not perfect.
"""

from __future__ import annotations

import random
from pathlib import Path
from xml.sax.saxutils import quoteattr

R_WORDS = [
    "ggplot",
    "dplyr",
    "tidyverse",
    "dataframe",
    "rstudio",
    "cran",
    "tibble",
    "lapply",
    "sapply",
    "shiny",
    "knitr",
    "rmarkdown",
    "factor",
    "mutate",
    "summarise",
    "reshape",
    "melt",
    "boxplot",
    "lm",
    "glm",
    "regression",
    "vector",
    "matrix",
    "plot",
]
OTHER_WORDS = {
    "python": [
        "pandas",
        "numpy",
        "django",
        "flask",
        "pip",
        "import",
        "dict",
        "list",
        "tuple",
        "class",
        "decorator",
        "virtualenv",
        "matplotlib",
        "vector",
        "matrix",
        "plot",
        "regression",
    ],
    "javascript": [
        "react",
        "node",
        "npm",
        "promise",
        "async",
        "await",
        "jquery",
        "dom",
        "json",
        "webpack",
        "array",
        "callback",
        "css",
        "html",
        "browser",
    ],
    "java": [
        "spring",
        "maven",
        "gradle",
        "jvm",
        "hashmap",
        "arraylist",
        "interface",
        "thread",
        "exception",
        "servlet",
        "hibernate",
        "annotation",
    ],
}
COMMON_WORDS = [
    "error",
    "code",
    "value",
    "data",
    "file",
    "question",
    "help",
    "using",
    "want",
    "column",
    "result",
    "output",
    "problem",
    "example",
    "string",
    "loop",
    "table",
    "function",
    "values",
    "rows",
    "return",
    "run",
    "working",
    "trying",
    "need",
    "way",
    "different",
    "number",
    "change",
    "new",
]


def _sentence(rng: random.Random, topic: list[str], n: int) -> str:
    words = [
        rng.choice(topic) if rng.random() < 0.45 else rng.choice(COMMON_WORDS) for _ in range(n)
    ]
    return " ".join(words)


def post(rng: random.Random, pid: int, r_share: float = 0.3) -> str:
    """One ``<row .../>`` line: a question, tagged ``<r>`` with probability ``r_share``."""
    if rng.random() < r_share:
        topic, tags = R_WORDS, ["r", rng.choice(["ggplot2", "dplyr", "dataframe", "shiny"])]
    else:
        language = rng.choice(sorted(OTHER_WORDS))
        topic, tags = OTHER_WORDS[language], [language]
    if rng.random() < 0.15:  # noise: a post that mostly talks about another topic
        topic = rng.choice([R_WORDS, *OTHER_WORDS.values()])
    title = _sentence(rng, topic, rng.randint(4, 9)).capitalize() + "?"
    body = "".join(
        f"<p>{_sentence(rng, topic, rng.randint(8, 20))}.</p>\n" for _ in range(rng.randint(1, 3))
    )
    tag_text = "".join(f"<{t}>" for t in tags)
    attrs = {
        "Id": str(pid),
        "PostTypeId": "1",
        "CreationDate": f"2017-04-{1 + pid % 28:02d}T12:00:00.000",
        "Score": str(rng.randint(-2, 20)),
        "Body": body,
        "Title": title,
        "Tags": tag_text,
    }
    # quoteattr escapes <, >, &, quotes and newlines (as &#10;), so each post stays on one
    # line, as in the StackOverflow dump.
    escaped = " ".join(f"{key}={quoteattr(value)}" for key, value in attrs.items())
    return f"  <row {escaped} />\n"


def write_posts(path: Path, count: int = 11000, seed: int = 20170428) -> Path:
    """Write ``count`` posts to ``path`` (the upstream ``data/data.xml``) and return it."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for pid in range(1, count + 1):
            out.write(post(rng, pid))
    return path
