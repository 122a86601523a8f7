"""Email commands into values: what a message to `LIST-request@` or a moderator's reply asks.

Commands are read from the Subject and then from the first lines of the body, the way
people write them ("subscribe", "digest on", "confirm TOKEN"); quoted text, signatures and
the rest of a reply are never read as commands. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

# Each command word with the arguments it accepts (None: any single word, e.g. a token).
COMMANDS: dict[str, tuple[str, ...] | None] = {
    "help": (),
    "subscribe": (),
    "unsubscribe": (),
    "digest": ("on", "off"),
    "nomail": ("on", "off"),
    "confirm": None,
    "export": (),  # one's personal data, by email once confirmed (GDPR articles 15, 20)
    "forget": (),  # to be forgotten, once confirmed (GDPR article 17)
}
ALIASES = {"join": "subscribe", "leave": "unsubscribe", "signoff": "unsubscribe",
           "info": "help", "?": "help"}
MODERATION_VERBS = ("approve", "reject", "discard")

MAX_BODY_LINES = 10  # lines of the body looked at for commands
_REPLY_PREFIX_RE = re.compile(r"^\s*((re|aw|sv|fw|fwd|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""

    @property
    def text(self) -> str:
        return f"{self.name} {self.arg}".strip()


def strip_reply_prefix(subject: str) -> str:
    return _REPLY_PREFIX_RE.sub("", subject).strip()


def parse_line(line: str) -> Command | None:
    """One command from one line, or None when the line is not a command."""
    words = line.strip().split()
    if not words:
        return None
    name = words[0].lower().rstrip(":")
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        return None
    allowed = COMMANDS[name]
    args = words[1:]
    if allowed is None:
        return Command(name, args[0]) if len(args) == 1 else None
    if not allowed:
        return Command(name) if not args else None
    if len(args) == 1 and args[0].lower() in allowed:
        return Command(name, args[0].lower())
    return None


def _body_lines(body: str) -> list[str]:
    """The first lines of the body that could be commands: up to quotes or a signature."""
    lines = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or line.rstrip() == "--" or line.startswith("-- "):
            break
        if stripped:
            lines.append(stripped)
        if len(lines) >= MAX_BODY_LINES:
            break
    return lines


def parse(subject: str, body: str) -> list[Command]:
    """The commands of a request: the Subject if it is one, then body lines until the first
    line that is not a command (so a chatty message costs nothing but one help answer)."""
    found: list[Command] = []
    first = parse_line(strip_reply_prefix(subject))
    if first is not None:
        found.append(first)
    for line in _body_lines(body):
        command = parse_line(line)
        if command is None:
            break
        if command not in found:
            found.append(command)
    return found


@dataclass(frozen=True)
class Moderation:
    verb: str  # approve | reject | discard
    reason: str = ""


def parse_moderation(subject: str, body: str) -> Moderation | None:
    """A moderator's answer: a verb starting the first body line, or the Subject. Only the
    first line counts, so an unquoted copy of our notice in a reply decides nothing."""
    for line in [*_body_lines(body)[:1], strip_reply_prefix(subject)]:
        word, _, rest = line.partition(" ")
        verb = word.lower().rstrip(":.,!")
        if verb in MODERATION_VERBS:
            return Moderation(verb, rest.strip() if verb == "reject" else "")
    return None


# -- commands in plain words ---------------------------------------------------------------
# Members write to the list itself "please take me off this list" or "stop"; those are
# read here. A phrasing must match as a whole (after courtesy words are dropped), so a
# sentence that merely mentions unsubscribing is never taken for a command.

_COURTESY = re.compile(
    r"\b(please|pls|plz|kindly|thanks?( you)?( so much| very much)?|thx|ty|hi|hello|hey|"
    r"dear( all| list| sir| madam| moderators?| admin)?|ok|okay|sorry|asap|now|immediately|"
    r"at once|i would like to|i'd like to|i want to|i wish to|could you|can you|"
    r"would you|will you|you|i need to|i have to|just)\b"
)
# Only the words that ask nicely: what is left of "please stop, thanks" is still "stop".
_POLITE = re.compile(r"\b(please|pls|plz|thanks?( you)?( so much| very much)?|thx|ty)\b")
_ME = r"(me|my (e-?mail )?(e-?mail|address|account|name|subscription))"
_LIST = r"((this|the|your|that) (mailing )?(list|group|forum)|(this|the) mailing list)"
_MAIL = (r"(((these|those|the|your|all|any) )?(e-?mails?|mails?|messages?|posts?)"
         r"|these|them|it|this)")

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH = "|".join(m for name in _MONTHS for m in (name, name[:3]))
_UNITS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "month": 30, "months": 30}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
            "ten": 10}
_DURATION = rf"((\d{{1,3}}|{'|'.join(_NUMBERS)}) (days?|weeks?|months?))"
_DAY = (rf"(({_MONTH}) \d{{1,2}}(st|nd|rd|th)?|\d{{1,2}}(st|nd|rd|th)?( of)? ({_MONTH})"
        r"|\d{4} \d\d \d\d)")
_WHEN = rf"({_DURATION}|{_DAY})"

_STRONG: tuple[tuple[Command, str], ...] = (
    (Command("unsubscribe"),
     rf"(unsubscribe|unsub|unsuscribe|unsubcribe|signoff|sign off|opt out|optout)"
     rf"( {_ME})?( (from|of) {_LIST})?"),
    (Command("unsubscribe"),
     rf"(remove|delete|drop|take) {_ME}( (off|from|of) {_LIST})?( off)?"),
    (Command("unsubscribe"), rf"(take|get) {_ME} off( {_LIST})?"),
    (Command("unsubscribe"), rf"(leave|quit|exit) {_LIST}"),
    (Command("unsubscribe"),
     rf"(stop|no more) (sending|emailing) {_ME}?( any)?( more)?( {_MAIL})?"
     rf"( from {_LIST})?"),
    (Command("unsubscribe"), rf"stop sending( {_MAIL})?( to {_ME})?"),
    (Command("unsubscribe"), rf"(i )?(do not|don't|dont) (want|wish) to (be on|receive) "
                             rf"({_LIST}|{_MAIL}|any more {_MAIL})( any ?more)?"),
    (Command("unsubscribe"), rf"no more {_MAIL}"),
    (Command("digest", "on"),
     rf"((send|switch|change|put) ({_ME}|it) (to|on) )?(the )?(daily )?digest"
     r"( mode| on| only| instead| once a day)*"),
    (Command("digest", "on"),
     rf"(one|a single|1) ({_MAIL}|e-?mail) (a|per) day( only| instead)?"),
    (Command("digest", "on"), r"(send|give) me (a|the) (daily )?(digest|summary)( instead)?"),
    (Command("digest", "off"),
     r"(digest off|no (more )?digests?|(each|every|all|individual) (messages?|posts?|e-?mails?)"
     r"( one by one| again| please)*)"),
    (Command("digest", "at"),
     r"((send|give) me )?((my|the) )?(daily )?digest( mode)?( each day| every day| daily)? at "
     r"(?P<hour>\d{1,2})( 00)?( ?(?P<ampm>am|pm|a m|p m))?( each day| every day| daily)?"),
    (Command("pause"),
     rf"(pause|pause (my )?(mail|e-?mails?|delivery)|hold (my )?(mail|e-?mails?)|"
     rf"(i am|i'm|im) (away|on holiday|on vacation)|away|back|(i'll|i will) be back)"
     rf"( for| until| till| on)? (the )?(?P<when>{_WHEN})"),
    (Command("nomail", "on"),
     r"(no ?mail|no ?mail on|no e-?mail|pause|pause (my )?(mail|e-?mails?|delivery)|"
     r"hold (my )?(mail|e-?mails?|delivery)|(i am|i'm|im) (on|going on) (holiday|vacation)|"
     r"vacation|holiday)( until i write( back| again)?| until further notice)?"),
    (Command("nomail", "off"),
     r"(nomail off|resume|resume (my )?(mail|e-?mails?|delivery)|unpause|"
     r"start (sending|emailing) (me )?again|(i am|i'm|im) back|back)"),
    (Command("subscribe"),
     rf"(subscribe|join|add me|sign me up)( {_ME})?( (to|on) {_LIST})?"),
)
# Phrasings that are commands only when written on their own: in a reply inside a
# discussion ("stop!" about a medication, "pause" about a breath exercise) they are held
# for a moderator instead of guessed.
_WEAK = {"stop", "stop it", "enough", "end", "cancel", "pause", "digest", "back", "resume",
         "remove", "holiday", "vacation", "join", "no more", "quit", "leave", "i'm back",
         "im back", "i am back"}
_WEAK_MEANS = {"stop": Command("unsubscribe"), "stop it": Command("unsubscribe"),
               "enough": Command("unsubscribe"), "end": Command("unsubscribe"),
               "cancel": Command("unsubscribe"), "remove": Command("unsubscribe"),
               "quit": Command("unsubscribe"), "leave": Command("unsubscribe"),
               "no more": Command("unsubscribe")}
# A short text with one of these words that is no known phrasing may still be a wish.
_HINT = re.compile(r"\b(unsubscribe|unsub|remove|stop|digest|pause|nomail|no mail|"
                   r"opt out|take me off|leave)\b")
MAYBE_MAX_WORDS = 4  # a longer text that is no known phrasing is a post

_COMPILED = tuple((command, re.compile(pattern)) for command, pattern in _STRONG)


@dataclass(frozen=True)
class Maybe:
    """A short text that might be `command`: a moderator decides, nothing is guessed."""

    command: Command | None


def _normalize(text: str, courtesy: re.Pattern[str] = _COURTESY) -> str:
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = courtesy.sub(" ", text)
    return " ".join(text.split())


def classify(text: str, in_discussion: bool = False) -> Command | Maybe | None:
    """What the whole new text of a message to the list asks, if it is a command.

    `text` is the author's own words (replytext.new_text), or the Subject when the body
    is empty; `in_discussion` is true for a reply to a thread.
    """
    raw_words = text.split()
    if not raw_words or len(raw_words) > 3 * MAYBE_MAX_WORDS:
        return None
    for core in _without_greeting_and_name(text):
        found = _match(_normalize(core))
        if found is not None and _normalize(core) not in _WEAK:
            return found
    words = _normalize(text)
    if not words:
        return None
    if words in _WEAK and _POLITE.sub(" ", _normalize(text, _POLITE)).strip() not in _WEAK:
        return None  # "hello back", "hi all, I'm back": a word among greetings is a post
    if words in _WEAK:
        meant = _WEAK_MEANS.get(words) or _match(words)
        return Maybe(meant) if in_discussion or meant is None else meant
    found = _match(words)
    if found is not None:
        return found
    if len(raw_words) <= MAYBE_MAX_WORDS and _HINT.search(words):
        return Maybe(None)
    return None


def _without_greeting_and_name(text: str) -> list[str]:
    """The text without a short greeting line ("Hi Olga,") and up to two short closing
    lines ("Best,", "Bob"): people frame even one-line requests."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and len(lines[0].split()) <= 3 and lines[0].endswith(","):
        lines = lines[1:]
    for _closing in range(2):
        if len(lines) > 1 and len(lines[-1].split()) <= 3:
            lines = lines[:-1]
    return [" ".join(lines)] if lines else []


def _match(words: str) -> Command | None:
    for command, pattern in _COMPILED:
        found = pattern.fullmatch(words)
        if found and found.groupdict().get("hour"):
            hour = int(found["hour"]) % 12 if found["ampm"] else int(found["hour"])
            hour += 12 if (found["ampm"] or "").startswith("p") else 0
            return Command("digest", f"at {hour}") if hour < 24 else None
        if found:
            when = found.groupdict().get("when")
            return Command(command.name, when) if when else command
    return None


def pause_end(when: str, today: date) -> date | None:
    """The day a pause ends: "2 weeks" from `today`, or "march 3" (the next one), or an
    ISO day; None for a day that is past or more than a year away."""
    words = [w for w in when.lower().split() if w != "of"]
    end: date | None = None
    try:
        if len(words) == 2 and words[1] in _UNITS:
            count = int(words[0]) if words[0].isdigit() else _NUMBERS.get(words[0], 0)
            end = today + timedelta(days=count * _UNITS[words[1]])
        elif len(words) == 3 and all(w.isdigit() for w in words):
            end = date(int(words[0]), int(words[1]), int(words[2]))
        elif len(words) == 2:
            day_word, month_word = words if words[0][0].isdigit() else words[::-1]
            month = next(i for i, m in enumerate(_MONTHS, 1) if month_word[:3] == m[:3])
            end = date(today.year, month, int(re.sub(r"\D", "", day_word)))
            if end <= today:
                end = end.replace(year=today.year + 1)
    except (ValueError, StopIteration):
        return None
    if end is None or end <= today or end > today + timedelta(days=366):
        return None
    return end
