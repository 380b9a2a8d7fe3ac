"""Available-to-sell for a channel feed: what the ledger says each pushed (item, location) may sell."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from app.domain import ledger
from app.domain.reconcile import available_to_sell
from app.models import ChannelLocation, Location, StockLevel
from app.models_sync import Feed
from app.services.sync.feeds import FeedMap, settings_of


def targets(
    session: Session, feed: Feed, fmap: FeedMap, refs: Iterable[tuple[str, str, str | None]]
) -> dict[tuple[str, str], int]:
    """ATS per (item_ref, location_ref): free units (after reservations and safety stock) less the
    feed's buffer, for the one location a ref names, or summed over the channel's locations that
    no ref of this feed names on its own."""
    buffer = settings_of(feed).safety_buffer
    channel_locs = set(
        session.scalars(
            select(ChannelLocation.location_id).where(ChannelLocation.channel_id == feed.channel_id)
        )
    )
    # A store the shop sells through its own location is left out of the whole-channel figure,
    # or the shop would offer the same units twice (once per location).
    rest = sorted(channel_locs - {loc for loc in fmap.locations.values() if loc is not None})
    wanted: list[tuple[str, str, int, list[int]]] = []
    for item_ref, loc_ref, sku_text in refs:
        sku_id = fmap.sku_id(item_ref, sku_text)
        if sku_id is None or loc_ref not in fmap.locations:
            continue
        one = fmap.locations[loc_ref]
        wanted.append((item_ref, loc_ref, sku_id, [one] if one is not None else rest))
    keys = sorted({(sku_id, loc) for _i, _l, sku_id, locs in wanted for loc in locs})
    defaults = dict(session.execute(select(Location.id, Location.default_safety_stock)).tuples().all())
    active = set(session.scalars(select(Location.id).where(Location.active.is_(True))))
    free: dict[tuple[int, int], int] = {}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        for sku_id, loc_id, on_hand, reserved, safety in session.execute(
            select(
                StockLevel.sku_id,
                StockLevel.location_id,
                StockLevel.on_hand,
                StockLevel.reserved,
                StockLevel.safety_stock,
            ).where(tuple_(StockLevel.sku_id, StockLevel.location_id).in_(part))
        ):
            if loc_id in active:
                free[(sku_id, loc_id)] = ledger.free_units(
                    on_hand, reserved, ledger.safety_for(safety, int(defaults.get(loc_id, 0))), online=True
                )
    return {
        (item_ref, loc_ref): available_to_sell([free.get((sku_id, loc), 0) for loc in locs], buffer)
        for item_ref, loc_ref, sku_id, locs in wanted
    }
