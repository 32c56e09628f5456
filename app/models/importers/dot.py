"""Import a Graphviz DOT digraph: the common subset, read by a small parser of our own.

Read: `strict`, `digraph NAME { … }`, node statements with attribute lists, edge chains
(`a -> b -> c`) with subgraph operands (`a -> {b c}`), `subgraph`s, `node [...]` defaults (for
the nodes that follow, in their scope), `graph [...]` and `key=value` graph attributes; quoted
("…", with \\" and + concatenation), HTML (<…>) and numeral ids; ports (`a:p`), edge attributes
and drawing attributes are ignored. Comments: //, /* */ and lines starting with #. In a quoted
string only \\" and a backslash before a line break are escapes; other backslashes stay.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from app.models.importers.graph import GraphEdge, GraphNode, dag_from_graph
from app.models.importers.result import ImportedDag, read_text
from app.models.spec import DagFileError, Problem

_KEYWORDS = frozenset({"strict", "graph", "digraph", "node", "edge", "subgraph"})
_SIMPLE_TOKEN_RE = re.compile(
    r"(?P<edge>->|--)"
    r"|(?P<numeral>-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?))"
    r"|(?P<name>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)"
    r"|(?P<punct>[{}\[\]=;,:+])"
)


class DotSyntaxError(ValueError):
    """DOT text that this parser does not read; `line` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "id" or the punctuation itself ("->", "{", "=" …), "end" at the end
    text: str
    line: int
    quoted: bool = False

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "id" and not self.quoted and self.text.lower() in words

    def shown(self) -> str:
        return "the end of the file" if self.kind == "end" else repr(self.text)


def import_dot(path: str | os.PathLike[str]) -> ImportedDag:
    """Read a DOT digraph and return its validated DAG; raise DagFileError."""
    source = os.fspath(path)
    return parse_dot_text(read_text(source), source=source)


def parse_dot_text(text: str, *, source: str) -> ImportedDag:
    """Parse DOT text and return its validated DAG; raise DagFileError."""
    try:
        graph = _Parser(tokenize(text)).parse_graph()
    except DotSyntaxError as exc:
        raise DagFileError([Problem(source, f"invalid DOT: {exc.message}", exc.line)]) from exc
    return dag_from_graph(
        name=graph.name,
        graph_attributes=graph.attributes,
        nodes=list(graph.nodes.values()),
        edges=graph.edges,
        source=source,
        kind="dot",
    )


# ---------------------------------------------------------------------------------------------
# Tokens


def tokenize(text: str) -> list[_Token]:
    """Split DOT text into tokens, dropping white space and comments."""
    tokens: list[_Token] = []
    position, line, n = 0, 1, len(text)
    while position < n:
        char = text[position]
        at_line_start = position == 0 or text[position - 1] == "\n"
        if char == "\n":
            line += 1
            position += 1
        elif char.isspace():
            position += 1
        elif text.startswith("//", position) or (char == "#" and at_line_start):
            end = text.find("\n", position)
            position = n if end < 0 else end
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            if end < 0:
                raise DotSyntaxError("a /* comment is not closed", line)
            line += text.count("\n", position, end)
            position = end + 2
        elif char == '"':
            value, end = _quoted(text, position, line)
            tokens.append(_Token("id", value, line, quoted=True))
            line += text.count("\n", position, end)
            position = end
        elif char == "<":
            value, end = _html(text, position, line)
            tokens.append(_Token("id", value, line, quoted=True))
            line += text.count("\n", position, end)
            position = end
        elif match := _SIMPLE_TOKEN_RE.match(text, position):
            kind = "id" if match.lastgroup in ("numeral", "name") else match.group()
            tokens.append(_Token(kind, match.group(), line))
            position = match.end()
        else:
            raise DotSyntaxError(f"unexpected character {char!r}", line)
    tokens.append(_Token("end", "", line))
    return tokens


def _quoted(text: str, start: int, line: int) -> tuple[str, int]:
    """The value of the quoted string opening at `start`, and the position after it."""
    parts: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == '"':
            return "".join(parts), position + 1
        if char == "\\" and text.startswith('"', position + 1):
            parts.append('"')
            position += 2
        elif char == "\\" and text.startswith("\n", position + 1):
            position += 2  # a line continuation
        else:
            parts.append(char)
            position += 1
    raise DotSyntaxError("a quoted string is not closed", line)


def _html(text: str, start: int, line: int) -> tuple[str, int]:
    """The text inside the HTML string <…> opening at `start`, and the position after it."""
    depth = 0
    for position in range(start, len(text)):
        depth += {"<": 1, ">": -1}.get(text[position], 0)
        if depth == 0:
            return text[start + 1 : position], position + 1
    raise DotSyntaxError("an HTML string <…> is not closed", line)


# ---------------------------------------------------------------------------------------------
# Statements


@dataclass(slots=True)
class _Graph:
    name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, GraphNode] = field(default_factory=dict)  # in order of first mention
    edges: list[GraphEdge] = field(default_factory=list)


@dataclass(slots=True)
class _Scope:
    """`node [...]` defaults of a graph or subgraph: for the nodes first mentioned after them."""

    node_defaults: dict[str, tuple[str, int]] = field(default_factory=dict)  # key: (value, line)


class _Parser:
    """Recursive descent over the tokens of one digraph."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._position = 0
        self._graph = _Graph()

    def parse_graph(self) -> _Graph:
        """graph : [strict] digraph [ID] '{' stmt_list '}'"""
        if self._peek().is_keyword("strict"):
            self._next()
        token = self._next()
        if token.is_keyword("graph"):
            raise DotSyntaxError("an undirected graph: write `digraph` and `->` edges", token.line)
        if not token.is_keyword("digraph"):
            raise DotSyntaxError(f"expected 'digraph', got {token.shown()}", token.line)
        if self._peek().kind == "id":
            self._graph.name = self._id()
        self._expect("{")
        self._statements(_Scope())
        self._expect("}")
        token = self._peek()
        if token.kind != "end":
            raise DotSyntaxError(f"expected one graph, got {token.shown()} after it", token.line)
        return self._graph

    def _statements(self, scope: _Scope) -> list[str]:
        """stmt_list; returns the nodes it mentions, for edges to a subgraph."""
        mentioned: list[str] = []
        while self._peek().kind not in ("}", "end"):
            mentioned += self._statement(scope)
            if self._peek().kind == ";":
                self._next()
        return list(dict.fromkeys(mentioned))

    def _statement(self, scope: _Scope) -> list[str]:
        token = self._peek()
        if token.is_keyword("graph", "node", "edge"):
            self._next()
            attributes = self._attribute_lists()
            if token.is_keyword("graph"):
                self._graph.attributes.update({k: v for k, (v, _) in attributes.items()})
            elif token.is_keyword("node"):
                scope.node_defaults.update(attributes)
            return []
        if token.kind == "id" and self._peek(1).kind == "=":
            key = self._id()
            self._next()
            self._graph.attributes[key] = self._id()
            return []
        operand = self._operand(scope)
        if self._peek().kind in ("->", "--"):
            return self._edges(operand, scope)
        if self._peek().kind == "[" and len(operand) == 1 and token.kind == "id":
            self._set_attributes(self._graph.nodes[operand[0]], self._attribute_lists())
        return operand

    def _edges(self, first: list[str], scope: _Scope) -> list[str]:
        """edge_stmt: operand (-> operand)+ [attr_list]; edge attributes are ignored."""
        mentioned, sources = list(first), first
        while self._peek().kind in ("->", "--"):
            arrow = self._next()
            if arrow.kind == "--":
                raise DotSyntaxError("'--' is an undirected edge: use '->'", arrow.line)
            targets = self._operand(scope)
            self._graph.edges += [GraphEdge(u, v, arrow.line) for u in sources for v in targets]
            mentioned += targets
            sources = targets
        if self._peek().kind == "[":
            self._attribute_lists()
        return mentioned

    def _operand(self, scope: _Scope) -> list[str]:
        """A node id (with an ignored port) or a subgraph; returns the nodes it stands for."""
        token = self._peek()
        if token.is_keyword("subgraph") or token.kind == "{":
            if token.is_keyword("subgraph"):
                self._next()
                if self._peek().kind == "id":
                    self._id()
            self._expect("{")
            inner = _Scope(dict(scope.node_defaults))
            mentioned = self._statements(inner)
            self._expect("}")
            return mentioned
        if token.kind != "id" or token.is_keyword(*_KEYWORDS):
            raise DotSyntaxError(
                f"expected a node, an edge or '}}', got {token.shown()}", token.line
            )
        node_id = self._id()
        while self._peek().kind == ":":  # a port and a compass point: where edges attach
            self._next()
            self._id()
        self._mention(node_id, token.line, scope)
        return [node_id]

    def _mention(self, node_id: str, line: int, scope: _Scope) -> None:
        if node_id not in self._graph.nodes:
            node = GraphNode(node_id, line=line)
            self._set_attributes(node, scope.node_defaults)
            self._graph.nodes[node_id] = node

    @staticmethod
    def _set_attributes(node: GraphNode, attributes: dict[str, tuple[str, int]]) -> None:
        for key, (value, line) in attributes.items():
            node.attributes[key] = value
            node.attribute_lines[key] = line

    def _attribute_lists(self) -> dict[str, tuple[str, int]]:
        """attr_list: ('[' (ID '=' ID [;,])* ']')+ as key: (value, line of the key)."""
        attributes: dict[str, tuple[str, int]] = {}
        opening = self._expect("[")
        while True:
            while self._peek().kind not in ("]", "end"):
                token = self._peek()
                key = self._id()
                if self._peek().kind != "=":
                    got = self._peek().shown()
                    message = f"expected '=' after {key!r}, got {got}"
                    if token.line != opening.line:
                        message += f" (is the ']' of line {opening.line} missing?)"
                    raise DotSyntaxError(message, token.line)
                self._next()
                attributes[key] = (self._id(), token.line)
                if self._peek().kind in (",", ";"):
                    self._next()
            self._expect("]")
            if self._peek().kind != "[":
                return attributes
            opening = self._next()

    def _id(self) -> str:
        """An ID; quoted strings joined by '+' are one."""
        token = self._next()
        if token.kind != "id":
            raise DotSyntaxError(
                f"expected a name or a quoted string, got {token.shown()}", token.line
            )
        value = token.text
        while token.quoted and self._peek().kind == "+" and self._peek(1).quoted:
            self._next()
            token = self._next()
            value += token.text
        return value

    def _expect(self, kind: str) -> _Token:
        token = self._next()
        if token.kind != kind:
            raise DotSyntaxError(f"expected '{kind}', got {token.shown()}", token.line)
        return token

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._position + ahead, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        if token.kind != "end":
            self._position += 1
        return token
