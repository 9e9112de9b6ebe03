"""The built-in answering machine: takes a message when the agent cannot answer (no LLM involved).

A small explicit state machine, fed the caller's utterances (and keypad digits) one at a time:

    APOLOGY ──(start)──▶ MESSAGE ──utterance──▶ CALLBACK ──utterance──▶ CONFIRM ──yes / 1──▶ DONE
                            ▲                                             │
                            └──────────── no / 2 (once; then accepted) ───┘

Every step returns what to say and whether the call should end after it. The result is the
transcript of what was taken down, stored as a `voicemail` for the agent (voice.live). What was said
before the machine took over (`earlier`: the utterance the agent never answered, often the whole
message) is part of it, so nothing the caller said is lost.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

# Cap what one caller can make us store: a message is a few sentences, not a dictation.
MAX_ANSWER_CHARS = 2000
MAX_RETRIES = 1

_YES = re.compile(r"\b(yes|yeah|yep|correct|right|sure|ok|okay|that's it|that is it|perfect)\b", re.IGNORECASE)
_NO = re.compile(r"\b(no|nope|wrong|not right|incorrect|change)\b", re.IGNORECASE)


class State(enum.Enum):
    APOLOGY = "apology"
    MESSAGE = "message"
    CALLBACK = "callback"
    CONFIRM = "confirm"
    DONE = "done"


@dataclass(frozen=True)
class Say:
    """What the machine answers: the words, and whether the call ends after them."""

    text: str
    end_call: bool = False


@dataclass
class AnsweringMachine:
    agent_name: str
    caller: str = ""
    state: State = State.APOLOGY
    message: str = ""
    callback: str = ""
    confirmed: bool = False
    retries: int = 0
    lines: list[tuple[str, str]] = field(default_factory=list)
    # (speaker, text) of the call before the machine took over, oldest first.
    earlier: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> Say:
        """The opening: an apology for the agent, then the first question."""
        self.state = State.MESSAGE
        return self._say(
            f"I'm sorry, {self.agent_name} can't take your call right now. "
            "I can take a message. Please tell me your message."
        )

    def hear(self, utterance: str) -> Say | None:
        """The caller said something; None once the machine is done (nothing more to say)."""
        text = " ".join(utterance.split())[:MAX_ANSWER_CHARS]
        if self.state in (State.APOLOGY, State.DONE):
            return None
        if not text:
            return self._say("Sorry, I didn't catch that. Could you say it again?")
        self.lines.append(("Caller", text))
        if self.state == State.MESSAGE:
            self.message = text
            self.state = State.CALLBACK
            return self._say("Thank you. How and when would you like to be called back?")
        if self.state == State.CALLBACK:
            self.callback = text
            self.state = State.CONFIRM
            return self._say(
                f"Let me read that back. Your message: {self.message}. Call back: {self.callback}. Is that right?"
            )
        return self._confirm(yes=bool(_YES.search(text)) and not _NO.search(text), no=bool(_NO.search(text)))

    def press(self, digit: str) -> Say | None:
        """A keypad digit: 1 confirms, 2 starts over, while confirming; ignored otherwise."""
        if self.state != State.CONFIRM or digit not in ("1", "2"):
            return None
        self.lines.append(("Caller", f"[pressed {digit}]"))
        return self._confirm(yes=digit == "1", no=digit == "2")

    def _confirm(self, *, yes: bool, no: bool) -> Say:
        if no and not yes and self.retries < MAX_RETRIES:
            self.retries += 1
            self.state = State.MESSAGE
            return self._say("Sorry about that. Please tell me your message again.")
        # A clear yes, or anything but a clear no, or a second correction: keep what we have.
        self.confirmed = yes
        self.state = State.DONE
        return self._say(
            f"Thank you. I'll pass your message on to {self.agent_name}. Goodbye.", end_call=True
        )

    def _say(self, text: str, *, end_call: bool = False) -> Say:
        self.lines.append(("Answering machine", text))
        return Say(text=text, end_call=end_call)

    @property
    def done(self) -> bool:
        return self.state == State.DONE

    @property
    def earlier_caller_words(self) -> str:
        return " ".join(text for speaker, text in self.earlier if speaker == "Caller" and text.strip())

    @property
    def has_message(self) -> bool:
        """Whether the caller said anything to pass on, to the machine or before it took over."""
        return bool(self.message or self.callback or self.earlier_caller_words)

    def transcript(self) -> str:
        """The voicemail's body: what was taken down, then the whole exchange."""
        summary = [
            f"Message: {self.message or self.earlier_caller_words[:MAX_ANSWER_CHARS] or '(none)'}",
            f"Call back: {self.callback or '(not given)'}",
            f"Confirmed by caller: {'yes' if self.confirmed else 'no'}",
        ]
        exchange = [f"{speaker}: {text}" for speaker, text in [*self.earlier, *self.lines]]
        return "\n".join([*summary, "", "Transcript:", *exchange])
