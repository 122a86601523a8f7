"""Commands in plain words: a table of real-style phrasings, with precision and recall."""

from __future__ import annotations

import pytest

from listserv.core.commands import Command, Maybe, classify

U, D, N, R, S = (
    Command("unsubscribe"),
    Command("digest", "on"),
    Command("nomail", "on"),
    Command("nomail", "off"),
    Command("subscribe"),
)
DOFF = Command("digest", "off")
MAYBE = "maybe"

# (text, written as a reply inside a discussion, what it is)
# What it is: a Command, MAYBE (a moderator should decide), or None (a post).
TABLE: list[tuple[str, bool, Command | str | None]] = [
    # Leaving, as members write it.
    ("unsubscribe", False, U),
    ("Unsubscribe", True, U),
    ("UNSUBSCRIBE!!!", False, U),
    ("unsubscribe me", False, U),
    ("Please unsubscribe me", False, U),
    ("please unsubscribe me from this list", True, U),
    ("Unsubscribe me from this mailing list please.", False, U),
    ("unsuscribe", False, U),
    ("unsub", False, U),
    ("remove me", False, U),
    ("Remove me.", True, U),
    ("Please remove me", False, U),
    ("please remove me from this list", False, U),
    ("Please remove me from the list, thank you", True, U),
    ("remove my email from this list", False, U),
    ("Please remove my email address from your list", False, U),
    ("delete me", False, U),
    ("please take me off this list", False, U),
    ("Take me off the list", True, U),
    ("take me off", False, U),
    ("Can you take me off this list please", False, U),
    ("please take me off", False, U),
    ("get me off this list", False, U),
    ("stop sending me emails", False, U),
    ("Stop sending me emails!", True, U),
    ("Please stop sending me these emails", False, U),
    ("stop emailing me", False, U),
    ("stop sending me messages from this group", False, U),
    ("no more emails please", False, U),
    ("No more emails", True, U),
    ("I don't want to receive these emails any more", False, U),
    ("I do not wish to be on this list", False, U),
    ("opt out", False, U),
    ("leave this group", False, U),
    ("Hi, please unsubscribe me. Thanks", False, U),
    ("Dear moderators, please remove me from the list. Thank you", False, U),
    ("sign off", False, U),
    ("Please remove me from this list, thank you\n\nBob", False, U),
    ("Hi Olga,\nplease take me off this list.\nBest regards,\nMaria", True, U),
    ("Daily digest please\n\nThanks\nCarol", False, D),
    ("Hi all,\nI'm on holiday until March.\nAna", True, None),
    ("Stop\nDave", True, MAYBE),
    ("stop", False, U),
    ("STOP", False, U),
    ("Stop!", False, U),
    ("cancel", False, U),
    ("enough", False, U),
    # Digest and back.
    ("digest", False, D),
    ("Digest please", False, D),
    ("daily digest please", False, D),
    ("Daily digest", True, D),
    ("digest mode", False, D),
    ("switch me to digest", False, D),
    ("send me the daily digest instead", False, D),
    ("put me on digest", False, D),
    ("one email a day please", False, D),
    ("digest only", False, D),
    ("digest on", False, D),
    ("digest at 6pm", False, Command("digest", "at 18")),
    ("Daily digest at 18:00 please", False, Command("digest", "at 18")),
    ("send me the digest at 7 am", False, Command("digest", "at 7")),
    ("pause 2 weeks", False, Command("pause", "2 weeks")),
    ("back on March 3", False, Command("pause", "march 3")),
    ("I'm away until 12 December", True, Command("pause", "12 december")),
    ("digest at noon", False, MAYBE),
    ("no more digest", False, DOFF),
    ("digest off", False, DOFF),
    ("each message please", False, DOFF),
    ("all messages again", False, DOFF),
    # No mail, pauses, coming back.
    ("no mail", False, N),
    ("No mail please", True, N),
    ("nomail", False, N),
    ("nomail on", False, N),
    ("pause", False, N),
    ("Pause please", False, N),
    ("pause my emails", False, N),
    ("pause until I write again", False, N),
    ("hold my mail", False, N),
    ("I'm on holiday", False, N),
    ("I am going on vacation", False, N),
    ("resume", False, R),
    ("resume my mail", False, R),
    ("I'm back", False, R),
    ("start sending me again", False, R),
    ("nomail off", False, R),
    # Joining, from someone who writes to the list itself.
    ("subscribe", False, S),
    ("Please subscribe me", False, S),
    ("add me to this list", False, S),
    ("sign me up", False, S),
    # Possibly a command: short, inside a discussion, or only close to a phrasing.
    ("stop!", True, MAYBE),
    ("Stop", True, MAYBE),
    ("pause", True, MAYBE),
    ("digest", True, MAYBE),
    ("enough", True, MAYBE),
    ("I'm back", True, MAYBE),
    ("cancel", True, MAYBE),
    ("how do I unsubscribe?", False, MAYBE),
    ("unsubscribe doesn't work", False, MAYBE),
    ("stop the digest emails", False, MAYBE),
    ("remove the attachment", True, MAYBE),
    ("Stop taking it", True, MAYBE),
    # Posts: never taken as commands.
    ("Thanks everyone, that helped a lot.", True, None),
    ("My mother was told to stop the riluzole for a week. Has anyone done that?", True, None),
    ("Stop worrying, it gets easier with time. We are all here for you.", True, None),
    ("I tried to unsubscribe from the hospital newsletter but they keep sending it.", True, None),
    ("Does anyone know how to remove the battery from the BiPAP machine?", False, None),
    ("The digest of the conference talks is online now, see the link below.", False, None),
    ("Please take me to the clinic on Monday if you can, my car is broken.", True, None),
    ("We went on holiday to the coast last month and the wheelchair access was great.", True, None),
    ("Pause for a moment and think about how far we have come together.", True, None),
    ("No more pain since the new dose, I am so relieved.", True, None),
    ("Hello everyone", False, None),
    ("Hi all, new here. My husband was diagnosed last year.", False, None),
    ("Happy birthday Maria!", True, None),
    ("+1", True, None),
    ("Me too", True, None),
    ("Thank you", True, None),
    ("Yes", True, None),
    ("Agreed, the feeding tube made a big difference.", True, None),
    ("Could someone remind me of the dosage of baclofen you use?", True, None),
    ("I can't stop crying today.", True, None),
    ("Where can I buy a digest of the latest research?", False, None),
    ("Good news: the trial is recruiting again.", False, None),
    ("Pausing the Radicava infusions helped my fatigue, ask your neurologist first.", True, None),
    ("Bitte", True, None),
    ("hello back", True, None),
    ("Hello back", False, None),
    ("Hi all, I'm back", True, None),
    ("Welcome back!", True, None),
    ("Stop, please", True, MAYBE),
    ("Thanks, I will stop then", True, None),
    ("Merci beaucoup à tous", True, None),
    ("Спасибо всем за поддержку", True, None),
    ("ありがとうございます", True, None),
]


def outcome(found: Command | Maybe | None) -> Command | str | None:
    return MAYBE if isinstance(found, Maybe) else found


@pytest.mark.parametrize(("text", "in_discussion", "expected"), TABLE)
def test_each_phrasing(text: str, in_discussion: bool, expected: Command | str | None) -> None:
    assert outcome(classify(text, in_discussion)) == expected


def test_precision_and_recall_over_the_table() -> None:
    """A command taken is right (precision), commands written are taken (recall), and no
    post or doubtful text of the table is ever taken for a command."""
    assert len(TABLE) >= 100
    taken = [(outcome(classify(t, d)), e) for t, d, e in TABLE]
    commands = [(got, want) for got, want in taken if isinstance(want, Command)]
    as_command = [(got, want) for got, want in taken if isinstance(got, Command)]
    right = sum(1 for got, want in as_command if got == want)
    precision = right / len(as_command)
    recall = sum(1 for got, want in commands if got == want) / len(commands)
    print(
        f"\nplain-words commands: {len(TABLE)} phrasings, {len(commands)} commands; "
        f"precision {precision:.3f}, recall {recall:.3f}"
    )
    assert not [
        t
        for (got, want), (t, _, _) in zip(taken, TABLE, strict=True)
        if isinstance(got, Command) and not isinstance(want, Command)
    ]
    assert precision == 1.0
    assert recall >= 0.95
