#!/usr/bin/env python3
"""Check the log of a chaos run (test_robust's "chaos" TCase).

The checker knows nothing of the daemon: it reads only the records the
workers (chaos_client.c) and the driver wrote, one per line:

    enter t=NS w=W pid=P name=N mode=M token=T   a worker got N
    exit  t=NS w=W pid=P name=N mode=M token=T   it is about to let go
    error t=NS w=W pid=P what=... code=...       a call failed
    spawn t=NS w=W pid=P                         the driver started W
    kill  t=NS w=W pid=P why=...                 about to SIGKILL W
    reap  t=NS w=W pid=P status=...              W ended so
    stop  t=NS                                   the driver said SIGTERM

t is CLOCK_MONOTONIC in nanoseconds.  A worker's interval on a name runs
from its enter record to its exit record.  A worker killed while holding
left no exit record; it believed it held the name up to the moment the
driver sent SIGKILL (the kill record's t, taken just before kill(2)), or
up to its last record if that is later, and the daemon can only have let
go of it after its death.  So that moment is a safe end for its interval.

It proves:
 (a) no two exclusive holders of a name overlapped, nor an exclusive and
     a shared one;
 (b) tokens only ever grew: each grant's token is unique; per name, in
     token order, a grant involving an exclusive holder starts after
     every earlier conflicting interval ended, and in time order the
     tokens of conflicting grants increase; each worker's tokens increase;
 (c) every worker killed while holding a name had that name granted
     onward: some other worker entered it after the kill.

It exits 0 when all holds and prints a summary; else 1 with the faults.
"""

import argparse
import collections
import sys


def parse(path):
    records = []
    with open(path, encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            rec = {"kind": parts[0], "line": lineno}
            for part in parts[1:]:
                key, sep, value = part.partition("=")
                if sep:
                    rec[key] = value
            for key in ("t", "w", "pid", "token"):
                if key in rec:
                    try:
                        rec[key] = int(rec[key])
                    except ValueError:
                        raise SystemExit("%s:%d: bad %s: %r" %
                                         (path, lineno, key, line))
            if "t" not in rec:
                raise SystemExit("%s:%d: no time: %r" % (path, lineno, line))
            records.append(rec)
    return records


def describe(iv):
    return ("worker %d (pid %d) %s token %d [%d, %d]%s" %
            (iv["w"], iv["pid"], iv["mode"], iv["token"], iv["start"],
             iv["end"], " killed" if iv["killed"] else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--min-grants", type=int, default=0)
    ap.add_argument("--min-holder-kills", type=int, default=0)
    args = ap.parse_args()

    records = parse(args.log)
    faults = []

    def fault(msg):
        if len(faults) < 50:
            faults.append(msg)
        elif len(faults) == 50:
            faults.append("... and more")

    by_worker = collections.defaultdict(list)
    kills = {}
    spawned = set()
    for rec in records:
        kind = rec["kind"]
        if kind in ("enter", "exit", "error"):
            by_worker[rec["w"]].append(rec)
        elif kind == "spawn":
            spawned.add(rec["w"])
        elif kind == "kill":
            kills[rec["w"]] = rec
        if kind == "error":
            fault("line %d: worker %d: %s failed: %s" %
                  (rec["line"], rec["w"], rec.get("what"), rec.get("code")))
        if kind == "reap" and rec["w"] not in kills and \
                rec.get("status") != "exit0":
            fault("line %d: worker %d ended with %s" %
                  (rec["line"], rec["w"], rec.get("status")))

    # Build the intervals, worker by worker, in each worker's own order.
    intervals = collections.defaultdict(list)   # name -> [interval]
    killed_holds = []                           # (interval, kill record)
    token_owner = {}
    for w, recs in by_worker.items():
        open_ = {}
        last_token = None
        for rec in recs:
            if rec["kind"] == "enter":
                name = rec["name"]
                if name in open_:
                    fault("line %d: worker %d entered %s twice" %
                          (rec["line"], w, name))
                    continue
                tok = rec["token"]
                if tok in token_owner:
                    fault("line %d: token %d granted twice (also line %d)"
                          % (rec["line"], tok, token_owner[tok]))
                token_owner[tok] = rec["line"]
                if not 0 < tok < 2 ** 53:
                    fault("line %d: token %d out of range" %
                          (rec["line"], tok))
                if last_token is not None and tok <= last_token:
                    fault("line %d: worker %d got token %d after %d" %
                          (rec["line"], w, tok, last_token))
                last_token = tok
                open_[name] = {"w": w, "pid": rec["pid"], "name": name,
                               "mode": rec["mode"], "token": tok,
                               "start": rec["t"], "end": None,
                               "killed": False, "line": rec["line"]}
            elif rec["kind"] == "exit":
                iv = open_.pop(rec["name"], None)
                if iv is None or iv["token"] != rec["token"] or \
                        iv["mode"] != rec["mode"]:
                    fault("line %d: worker %d exit without its enter" %
                          (rec["line"], w))
                    continue
                if rec["t"] < iv["start"]:
                    fault("line %d: exit before enter" % rec["line"])
                iv["end"] = rec["t"]
                intervals[iv["name"]].append(iv)
        for name, iv in open_.items():
            kill = kills.get(w)
            if kill is None:
                fault("line %d: worker %d never left %s, and was not "
                      "killed" % (iv["line"], w, name))
                continue
            iv["end"] = max(kill["t"], recs[-1]["t"])
            iv["killed"] = True
            intervals[name].append(iv)
            killed_holds.append((iv, kill))

    # (a) and (b): token order agrees with the order of conflicting holds.
    nintervals = 0
    for name, ivs in sorted(intervals.items()):
        nintervals += len(ivs)
        last_all = last_excl = None     # the interval ending latest
        for iv in sorted(ivs, key=lambda i: i["token"]):
            if iv["mode"] == "exclusive":
                before = last_all
            else:
                before = last_excl
            if before is not None and iv["start"] <= before["end"]:
                fault("%s: %s overlaps %s" %
                      (name, describe(iv), describe(before)))
            if last_all is None or iv["end"] > last_all["end"]:
                last_all = iv
            if iv["mode"] == "exclusive" and \
                    (last_excl is None or iv["end"] > last_excl["end"]):
                last_excl = iv
        top_all = top_excl = None       # the largest token so far
        for iv in sorted(ivs, key=lambda i: (i["start"], i["token"])):
            top = top_all if iv["mode"] == "exclusive" else top_excl
            if top is not None and iv["token"] <= top["token"]:
                fault("%s: token went back: %s entered after %s" %
                      (name, describe(iv), describe(top)))
            if top_all is None or iv["token"] > top_all["token"]:
                top_all = iv
            if iv["mode"] == "exclusive" and \
                    (top_excl is None or iv["token"] > top_excl["token"]):
                top_excl = iv

    # (c): what a killed holder had went on to someone else.
    handoffs = []
    for iv, kill in killed_holds:
        later = [o["start"] for o in intervals[iv["name"]]
                 if o["w"] != iv["w"] and o["start"] > iv["end"]]
        if not later:
            fault("%s: %s was killed at %d and nobody got the name after"
                  % (iv["name"], describe(iv), kill["t"]))
        else:
            handoffs.append((min(later) - kill["t"]) / 1e9)

    nenter = sum(1 for r in records if r["kind"] == "enter")
    nkill = len(kills)
    kinds = collections.Counter(k.get("why", "?") for k in kills.values())
    handoffs.sort()
    print("chaos_check: %d workers, %d grants logged, %d intervals checked "
          "over %d names" % (len(spawned), nenter, nintervals,
                             len(intervals)))
    print("chaos_check: %d kills (%s); %d killed while holding, all "
          "handed on" % (nkill, ", ".join("%s %d" % kv for kv in
                                           sorted(kinds.items())),
                         len(killed_holds))
          if not faults else
          "chaos_check: %d kills, %d killed while holding" %
          (nkill, len(killed_holds)))
    if handoffs:
        print("chaos_check: kill to next grant: median %.3f s, max %.3f s" %
              (handoffs[len(handoffs) // 2], handoffs[-1]))
    if nenter < args.min_grants:
        fault("only %d grants logged; wanted at least %d" %
              (nenter, args.min_grants))
    if len(killed_holds) < args.min_holder_kills:
        fault("only %d holders killed; wanted at least %d" %
              (len(killed_holds), args.min_holder_kills))
    for f in faults:
        print("chaos_check: FAULT: %s" % f)
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
