"""The answering machine's state machine (issue 12 item 4): pure logic, no socket."""

from __future__ import annotations

from voice.answering_machine import AnsweringMachine, State


def test_it_apologises_takes_a_message_asks_for_a_callback_confirms_and_says_goodbye() -> None:
    machine = AnsweringMachine(agent_name="Agent A", caller="+12125550123")
    opening = machine.start()
    assert "Agent A can't take your call" in opening.text and "message" in opening.text
    assert not opening.end_call
    asked = machine.hear("Please tell Bob the delivery is late; order 1234.")
    assert "called back" in asked.text
    confirm = machine.hear("Call me at 555 0199 after 5pm")
    assert "order 1234" in confirm.text and "after 5pm" in confirm.text and confirm.text.endswith("Is that right?")
    goodbye = machine.hear("Yes, that's right.")
    assert goodbye.end_call and "Goodbye" in goodbye.text
    assert machine.done and machine.confirmed
    assert machine.hear("hello?") is None
    body = machine.transcript()
    assert body.startswith(
        "Message: Please tell Bob the delivery is late; order 1234.\nCall back: Call me at 555 0199 after 5pm\n"
        "Confirmed by caller: yes\n\nTranscript:\nAnswering machine: I'm sorry"
    )
    assert "Caller: Yes, that's right." in body


def test_a_no_at_the_confirmation_takes_the_message_again_once() -> None:
    machine = AnsweringMachine(agent_name="Agent A")
    machine.start()
    machine.hear("first try")
    machine.hear("tomorrow")
    again = machine.hear("No, that's not right")
    assert machine.state is State.MESSAGE and "again" in again.text
    machine.hear("second try")
    machine.hear("tonight")
    final = machine.hear("no")
    # A second correction is not looped on for ever: what was said last is kept.
    assert final.end_call and machine.done and not machine.confirmed
    assert (machine.message, machine.callback) == ("second try", "tonight")


def test_the_keypad_confirms_with_1_and_corrects_with_2() -> None:
    machine = AnsweringMachine(agent_name="Agent A")
    machine.start()
    assert machine.press("1") is None  # nothing to confirm yet
    machine.hear("message")
    machine.hear("callback")
    assert machine.press("2") is not None and machine.state is State.MESSAGE
    machine.hear("message 2")
    machine.hear("callback 2")
    assert machine.press("1").end_call and machine.confirmed


def test_silence_is_asked_again_and_long_answers_are_capped() -> None:
    machine = AnsweringMachine(agent_name="Agent A")
    machine.start()
    assert "didn't catch" in machine.hear("   ").text
    assert machine.state is State.MESSAGE
    machine.hear("x" * 10_000)
    assert len(machine.message) == 2000
    assert not AnsweringMachine(agent_name="A").has_message


def test_what_the_caller_said_before_it_took_over_is_kept_as_the_message() -> None:
    machine = AnsweringMachine(
        agent_name="Agent A", earlier=[("Caller", "Hi, this is Bob, call me at 415 555 0188."), ("Agent A", "Let me")]
    )
    machine.start()
    # The caller hangs up without answering the machine: what they said first is still the message.
    assert machine.has_message
    body = machine.transcript()
    assert body.startswith("Message: Hi, this is Bob, call me at 415 555 0188.\nCall back: (not given)")
    assert "Transcript:\nCaller: Hi, this is Bob, call me at 415 555 0188.\nAgent A: Let me\nAnswering machine: I'm sorry" in body


def test_a_message_given_to_the_machine_wins_over_the_earlier_words() -> None:
    machine = AnsweringMachine(agent_name="Agent A", earlier=[("Caller", "Hello?")])
    machine.start()
    machine.hear("The parcel arrived damaged.")
    assert machine.transcript().startswith("Message: The parcel arrived damaged.\n")
    assert "Caller: Hello?\nAnswering machine:" in machine.transcript()
