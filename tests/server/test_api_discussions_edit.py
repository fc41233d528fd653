"""Discussions and pull requests through the official client: edit and hide a comment, rename,
change status (with a comment), list with author / type / status filters and pages, events in order."""

from __future__ import annotations

import warnings

import pytest
from huggingface_hub import HfApi
from huggingface_hub.community import DiscussionComment, DiscussionStatusChange, DiscussionTitleChange
from huggingface_hub.errors import HfHubHTTPError


def _status(exc: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert exc.value.response is not None
    return exc.value.response.status_code


def test_edit_hide_rename_status_and_events_in_order(hub, api, users, repo_id):
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    d = bob.create_discussion(repo_id, "Typo in card", description="first words")
    first = api.get_discussion_details(repo_id, d.num).events[0]
    assert isinstance(first, DiscussionComment) and first.content == "first words"

    edited = bob.edit_discussion_comment(repo_id, d.num, first.id, "better words")
    assert isinstance(edited, DiscussionComment) and edited.edited and edited.content == "better words"
    with pytest.raises(HfHubHTTPError) as exc:
        api.edit_discussion_comment(repo_id, d.num, first.id, "not mine")
    assert _status(exc) == 403, "only the author edits a comment"

    reply = api.comment_discussion(repo_id, d.num, "thanks")
    renamed = bob.rename_discussion(repo_id, d.num, "Typo in the card")
    assert isinstance(renamed, DiscussionTitleChange)
    assert (renamed.old_title, renamed.new_title) == ("Typo in card", "Typo in the card")
    closed = api.change_discussion_status(repo_id, d.num, "closed", comment="fixed in main")
    assert isinstance(closed, DiscussionStatusChange) and closed.new_status == "closed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the client warns that hiding is irreversible
        hidden = api.hide_discussion_comment(repo_id, d.num, reply.id)  # the repo owner may hide any comment
    assert hidden.hidden and hidden.content == ""

    details = api.get_discussion_details(repo_id, d.num)
    assert details.title == "Typo in the card" and details.status == "closed"
    kinds = [(type(e).__name__, getattr(e, "content", None)) for e in details.events]
    assert kinds == [("DiscussionComment", "better words"), ("DiscussionComment", ""), ("DiscussionTitleChange", None),
                     ("DiscussionComment", "fixed in main"), ("DiscussionStatusChange", None)]
    assert [e.created_at for e in details.events] == sorted(e.created_at for e in details.events)
    with pytest.raises(HfHubHTTPError) as exc:
        api.edit_discussion_comment(repo_id, d.num, "0" * 24, "nothing there")
    assert _status(exc) == 404
    with pytest.raises(HfHubHTTPError) as exc:
        api.change_discussion_status(repo_id, d.num, "closed")
    assert _status(exc) == 400, "already closed"
    reopened = bob.change_discussion_status(repo_id, d.num, "open")
    assert reopened.new_status == "open"


def test_others_cannot_rename_or_hide(hub, api, users, repo_id):
    d = api.create_discussion(repo_id, "Owner's thread", description="hello")
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    with pytest.raises(HfHubHTTPError) as exc:
        alice.rename_discussion(repo_id, d.num, "mine now")
    assert _status(exc) == 403
    comment_id = api.get_discussion_details(repo_id, d.num).events[0].id
    with warnings.catch_warnings(), pytest.raises(HfHubHTTPError) as exc:
        warnings.simplefilter("ignore", UserWarning)
        alice.hide_discussion_comment(repo_id, d.num, comment_id)
    assert _status(exc) == 403
    with pytest.raises(HfHubHTTPError) as exc:
        alice.change_discussion_status(repo_id, d.num, "closed")
    assert _status(exc) == 403


def test_list_with_filters_and_pages(hub, api, users, repo_id):
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    for i in range(53):
        api.create_discussion(repo_id, f"owner {i}")
    bob_d = bob.create_discussion(repo_id, "from bob")
    pr = bob.create_pull_request(repo_id, "bob's PR")
    api.change_discussion_status(repo_id, bob_d.num, "closed")

    everything = list(api.get_repo_discussions(repo_id))
    assert len(everything) == 55, "more than one page (50) is followed"
    assert [d.num for d in everything] == sorted((d.num for d in everything), reverse=True)
    assert [d.num for d in api.get_repo_discussions(repo_id, author=users["bob"])] == [pr.num, bob_d.num]
    assert [d.num for d in api.get_repo_discussions(repo_id, discussion_type="pull_request")] == [pr.num]
    assert [d.num for d in api.get_repo_discussions(repo_id, discussion_status="closed")] == [bob_d.num]
    assert [d.num for d in api.get_repo_discussions(repo_id, author=users["bob"], discussion_type="discussion",
                                                    discussion_status="open")] == []
