//! The supervisor driven directly: events and made-up times in, commands
//! and the outcome checked.

use super::*;
use crate::report::NodeReport;

const SECOND: Duration = Duration::from_secs(1);

fn timeouts() -> Timeouts {
    Timeouts {
        ready: 30 * SECOND,
        silence: 2 * SECOND,
        grace: 2 * SECOND,
        backoff: Backoff::default(),
    }
}

/// Nodes A (a local spout), B and C (on cd-h1, agent 0).
fn supervisor(t0: Instant) -> Supervisor {
    let placed = |name: &str, host: &str, agent| Placed {
        name: name.into(),
        host: host.into(),
        agent,
        spout: name == "A",
        restarts: 0,
    };
    Supervisor::new(
        vec![
            placed("A", "localhost", None),
            placed("B", "cd-h1", Some(0)),
            placed("C", "cd-h1", Some(0)),
        ],
        vec!["cd-h1".into()],
        timeouts(),
        t0,
    )
}

/// The run's failure, as the user reads it.
fn failure(s: &mut Supervisor) -> String {
    s.outcome().failure.expect("the run failed").to_string()
}

/// Node `node`'s control connection closed cleanly.
fn closed(node: NodeId) -> Event {
    Event::Closed {
        peer: Peer::Node(node),
        reason: None,
    }
}

fn commands(s: &mut Supervisor) -> Vec<Command> {
    std::iter::from_fn(|| s.poll_command()).collect()
}

fn ready(s: &mut Supervisor, now: Instant, node: NodeId) {
    s.handle(
        now,
        Event::Spawned {
            node,
            pid: 100 + node as u32,
            start_time: 1000 + node as u64,
        },
    );
    s.handle(now, Event::Connected(Peer::Node(node)));
    s.handle(
        now,
        Event::Message {
            node,
            message: ToMaster::Ready {
                pid: 100 + node as u32,
                data: format!("data-{node}"),
            },
        },
    );
}

fn report(name: &str) -> NodeReport {
    NodeReport {
        name: name.into(),
        ..NodeReport::default()
    }
}

fn starts(data: &[&str]) -> Vec<Command> {
    (0..data.len())
        .map(|node| Command::Send {
            node,
            message: ToNode::Start {
                data: data.iter().map(|d| (*d).to_owned()).collect(),
            },
        })
        .collect()
}

fn all_ready(s: &mut Supervisor, now: Instant) {
    for node in 0..3 {
        ready(s, now, node);
    }
    s.tick(now);
    assert_eq!(commands(s), starts(&["data-0", "data-1", "data-2"]));
}

#[test]
fn start_goes_out_once_every_node_is_ready_with_every_data_address() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    ready(&mut s, t0, 1);
    s.tick(t0 + SECOND);
    assert_eq!(commands(&mut s), vec![], "C is not ready");
    assert_eq!(s.started_at(), None);
    ready(&mut s, t0 + SECOND, 2);
    s.tick(t0 + SECOND);
    assert_eq!(commands(&mut s), starts(&["data-0", "data-1", "data-2"]));
    assert_eq!(s.started_at(), Some(t0 + SECOND));
    assert_eq!(*s.state(1), NodeState::Running);
}

/// The misfire of issue 13: the first node ready long before the last must
/// not be taken for silent when the run starts, as long as it speaks.
#[test]
fn a_node_ready_long_before_the_last_is_not_silent_while_it_speaks() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    // A heartbeat every half second while B and C take 10 s.
    for half in 1..=20 {
        let now = t0 + SECOND * half / 2;
        s.handle(
            now,
            Event::Message {
                node: 0,
                message: ToMaster::Heartbeat,
            },
        );
        s.handle(now, Event::Heard(Peer::Agent(0)));
        s.tick(now);
    }
    ready(&mut s, t0 + 10 * SECOND, 1);
    ready(&mut s, t0 + 10 * SECOND, 2);
    s.tick(t0 + 10 * SECOND);
    assert_eq!(commands(&mut s), starts(&["data-0", "data-1", "data-2"]));
    assert!(s.outcome().failure.is_none());
}

/// Silence is counted before `Start` too, from the last message.
#[test]
fn a_node_silent_while_others_start_fails_the_run_by_name() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    s.tick(t0 + 2 * SECOND);
    assert!(commands(&mut s).is_empty(), "2 s of silence is allowed");
    s.tick(t0 + 2 * SECOND + Duration::from_millis(1));
    let outcome = s.outcome();
    assert_eq!(
        outcome.failure.unwrap().to_string(),
        "node A: control connection lost: no word for 2s"
    );
}

#[test]
fn a_node_killed_after_start_is_reported_with_host_pid_and_signal() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    let t1 = t0 + SECOND;
    s.handle(
        t1,
        Event::Exited {
            node: 1,
            cause: ExitCause::Signal(9),
        },
    );
    assert!(matches!(s.state(1), NodeState::Exiting { .. }));
    assert!(commands(&mut s).is_empty(), "its report may be in flight");
    s.handle(t1, closed(1));
    assert_eq!(
        commands(&mut s),
        vec![
            Command::Send {
                node: 0,
                message: ToNode::Abort
            },
            Command::Send {
                node: 2,
                message: ToNode::Abort
            },
        ]
    );
    assert_eq!(
        failure(&mut s),
        "node B (pid 101) on host cd-h1 killed by signal 9 (SIGKILL)"
    );
}

#[test]
fn a_report_that_arrives_after_the_exit_is_not_a_death() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    for node in 0..3 {
        s.handle(
            t0,
            Event::Exited {
                node,
                cause: ExitCause::Status(0),
            },
        );
        s.handle(
            t0,
            Event::Message {
                node,
                message: ToMaster::Done {
                    report: Box::new(report("x")),
                },
            },
        );
    }
    assert!(s.is_over());
    assert_eq!(s.started_at(), Some(t0));
    let outcome = s.outcome();
    assert!(outcome.failure.is_none() && !outcome.aborted);
    assert_eq!(outcome.nodes[2].1, Some(ExitCause::Status(0)));
}

/// A node that connects, refuses and exits may be seen to exit before its
/// connection is accepted: the refusal, not a death, is the cause.
#[test]
fn an_exit_seen_before_the_connection_waits_for_it() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    s.handle(
        t0,
        Event::Spawned {
            node: 0,
            pid: 7,
            start_time: 0,
        },
    );
    s.handle(
        t0,
        Event::Exited {
            node: 0,
            cause: ExitCause::Status(3),
        },
    );
    s.tick(t0 + LINGER / 2);
    assert!(commands(&mut s).is_empty());
    s.handle(t0 + LINGER / 2, Event::Connected(Peer::Node(0)));
    s.handle(
        t0 + LINGER / 2,
        Event::Message {
            node: 0,
            message: ToMaster::Refused {
                reason: "topology fingerprint mismatch".into(),
            },
        },
    );
    assert_eq!(
        failure(&mut s),
        "node A refused to start: topology fingerprint mismatch"
    );
}

#[test]
fn an_exit_never_followed_by_a_connection_is_a_death_after_the_linger() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    s.handle(
        t0,
        Event::Spawned {
            node: 2,
            pid: 9,
            start_time: 0,
        },
    );
    s.handle(
        t0,
        Event::Exited {
            node: 2,
            cause: ExitCause::Status(2),
        },
    );
    s.tick(t0 + LINGER - Duration::from_millis(1));
    assert!(matches!(s.state(2), NodeState::ExitedUnseen { .. }));
    s.tick(t0 + LINGER);
    assert_eq!(
        *s.state(2),
        NodeState::Ended {
            cause: Some(ExitCause::Status(2))
        }
    );
    assert_eq!(
        failure(&mut s),
        "node C (pid 9) on host cd-h1 exited with status 2"
    );
}

#[test]
fn an_abort_kills_what_still_runs_after_the_grace_then_gives_up() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    s.handle(t0, Event::Abort);
    assert_eq!(commands(&mut s).len(), 3, "Abort to every node");
    // A ends in time; B and C do not.
    s.handle(
        t0,
        Event::Exited {
            node: 0,
            cause: ExitCause::Status(1),
        },
    );
    s.handle(t0, closed(0));
    s.tick(t0 + SECOND);
    assert!(commands(&mut s).is_empty());
    s.tick(t0 + 2 * SECOND);
    assert_eq!(
        commands(&mut s),
        vec![Command::Kill { node: 1 }, Command::Kill { node: 2 }]
    );
    s.handle(
        t0 + 2 * SECOND,
        Event::Exited {
            node: 1,
            cause: ExitCause::Signal(9),
        },
    );
    s.handle(t0 + 2 * SECOND, closed(1));
    s.tick(t0 + 4 * SECOND);
    assert_eq!(
        commands(&mut s),
        vec![Command::Warn(
            "node C on host cd-h1 was not seen to end; given up".into()
        )]
    );
    assert!(s.is_over());
    let outcome = s.outcome();
    assert!(outcome.aborted && outcome.failure.is_none(), "{outcome:?}");
}

/// Workers hear of a drain before spouts, so that none sees a spout end
/// before it knows why; spouts are told once every worker said it heard.
#[test]
fn a_drain_reaches_the_workers_first_then_the_spouts() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    s.handle(t0, Event::Drain);
    let drain = |node| Command::Send {
        node,
        message: ToNode::Drain,
    };
    assert_eq!(commands(&mut s), vec![drain(1), drain(2)]);
    let draining = |node| Event::Message {
        node,
        message: ToMaster::Draining,
    };
    s.handle(t0, draining(2));
    s.tick(t0);
    assert!(commands(&mut s).is_empty(), "B has not said it heard");
    s.handle(t0, draining(1));
    assert_eq!(commands(&mut s), vec![drain(0)]);
    s.handle(t0, Event::Drain);
    assert!(commands(&mut s).is_empty(), "once");
}

#[test]
fn a_drain_asked_for_during_the_launch_follows_start() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    s.handle(t0, Event::Drain);
    assert!(
        commands(&mut s).is_empty(),
        "nodes heed a drain once started"
    );
    ready(&mut s, t0, 1);
    ready(&mut s, t0, 2);
    s.tick(t0);
    let sent = commands(&mut s);
    assert_eq!(sent.len(), 5);
    assert_eq!(
        sent[3],
        Command::Send {
            node: 1,
            message: ToNode::Drain
        }
    );
    // C's connection closes before it says it heard: A is told anyway.
    s.handle(
        t0,
        Event::Message {
            node: 1,
            message: ToMaster::Draining,
        },
    );
    s.handle(t0, closed(2));
    s.tick(t0);
    assert_eq!(
        commands(&mut s),
        vec![Command::Send {
            node: 0,
            message: ToNode::Drain
        }]
    );
}

#[test]
fn a_lost_agent_fails_the_run_naming_its_host_and_nodes() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    s.handle(
        t0,
        Event::Closed {
            peer: Peer::Agent(0),
            reason: Some("connection reset by peer".into()),
        },
    );
    assert_eq!(*s.state(1), NodeState::Ended { cause: None });
    assert_eq!(
        failure(&mut s),
        "host cd-h1: the connection to its agent was lost (connection reset by peer) with nodes B, C on it"
    );
}

#[test]
fn a_silent_agent_fails_the_run_naming_its_host() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    for node in 0..3 {
        ready(&mut s, t0 + 3 * SECOND, node);
    }
    s.tick(t0 + 3 * SECOND);
    assert_eq!(failure(&mut s), "host cd-h1: its agent said nothing for 2s");
}

#[test]
fn the_ready_timeout_names_the_first_node_not_ready_and_its_host() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    s.handle(t0, Event::Heard(Peer::Agent(0)));
    // Keep A and the agent talking: only readiness is late.
    for step in 1..=31 {
        let now = t0 + SECOND * step;
        s.handle(now, Event::Heard(Peer::Node(0)));
        s.handle(now, Event::Heard(Peer::Agent(0)));
        s.tick(now);
    }
    assert_eq!(
        failure(&mut s),
        "node B on host cd-h1 did not report ready within 30s"
    );
}

#[test]
fn the_first_failure_is_the_one_reported() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    all_ready(&mut s, t0);
    s.handle(
        t0,
        Event::Message {
            node: 1,
            message: ToMaster::Failed {
                failure: Failure::Node {
                    node: "B".into(),
                    seq: Some(4),
                    message: "boom".into(),
                },
                report: Box::new(report("B")),
                passing: true,
            },
        },
    );
    s.handle(
        t0,
        Event::Exited {
            node: 2,
            cause: ExitCause::Signal(9),
        },
    );
    s.handle(t0, closed(2));
    assert_eq!(failure(&mut s), "node B failed at seq 4: boom");
}

#[test]
fn a_node_its_agent_could_not_start_fails_the_run_and_is_not_waited_for() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    ready(&mut s, t0, 0);
    s.handle(
        t0,
        Event::NotStarted {
            node: 1,
            message: "No such file or directory (os error 2)".into(),
        },
    );
    s.tick(t0 + 2 * SECOND);
    assert_eq!(
        commands(&mut s),
        vec![
            Command::Send {
                node: 0,
                message: ToNode::Abort
            },
            Command::Kill { node: 0 },
            Command::Kill { node: 2 },
        ],
        "B never ran: nothing to kill"
    );
    assert_eq!(
        failure(&mut s),
        "cannot start node B on host cd-h1: No such file or directory (os error 2)"
    );
}

/// The exit of a node and its `Ready` come from different threads: a
/// `Ready` behind the exit is not a protocol error, the exit is the cause.
#[test]
fn a_ready_that_arrives_after_the_exit_leaves_the_exit_as_the_cause() {
    let t0 = Instant::now();
    let mut s = supervisor(t0);
    s.handle(
        t0,
        Event::Spawned {
            node: 1,
            pid: 8,
            start_time: 0,
        },
    );
    s.handle(t0, Event::Connected(Peer::Node(1)));
    s.handle(
        t0,
        Event::Exited {
            node: 1,
            cause: ExitCause::Signal(11),
        },
    );
    s.handle(
        t0,
        Event::Message {
            node: 1,
            message: ToMaster::Ready {
                pid: 8,
                data: String::new(),
            },
        },
    );
    s.handle(t0, closed(1));
    assert_eq!(
        failure(&mut s),
        "node B (pid 8) on host cd-h1 killed by signal 11 (SIGSEGV)"
    );
}

/// Nodes A (a spout), B and C, all local, each with `restarts` restarts;
/// every node ready and started at `t0`.
fn restartable(t0: Instant, restarts: u32) -> Supervisor {
    let placed = |name: &str| Placed {
        name: name.into(),
        host: "localhost".into(),
        agent: None,
        spout: name == "A",
        restarts,
    };
    let mut s = Supervisor::new(
        vec![placed("A"), placed("B"), placed("C")],
        Vec::new(),
        timeouts(),
        t0,
    );
    for node in 0..3 {
        ready(&mut s, t0, node);
    }
    s.tick(t0);
    commands(&mut s);
    s
}

/// Node `node`'s process is killed: its exit and the end of its connection.
fn killed(s: &mut Supervisor, now: Instant, node: NodeId) {
    s.handle(
        now,
        Event::Exited {
            node,
            cause: ExitCause::Signal(9),
        },
    );
    s.handle(now, closed(node));
}

#[test]
fn a_killed_node_is_restarted_at_once_as_its_predecessors_successor() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 2);
    let t1 = t0 + SECOND;
    killed(&mut s, t1, 2);
    // The run goes on: nothing is aborted, the others are not told.
    let said = commands(&mut s);
    assert!(
        matches!(&said[..], [Command::Warn(w)] if w.contains("node C on host localhost killed by signal 9 (SIGKILL); restarting it (restart 1 of 2)")),
        "{said:?}"
    );
    s.tick(t1);
    assert_eq!(
        commands(&mut s),
        [Command::Restart {
            node: 2,
            predecessors: vec![Predecessor {
                pid: 102,
                start_time: 1002
            }],
            restart: 1,
            restarts: 2,
            cause: "killed by signal 9 (SIGKILL)".into(),
        }]
    );
    // Its successor is started the moment it is ready, with every node's
    // data address; the others hear where it serves its ring now (its
    // consumers on other hosts reconnect there).
    let t2 = t1 + Duration::from_millis(30);
    ready(&mut s, t2, 2);
    let start = ToNode::Start {
        data: (0..3).map(|n| format!("data-{n}")).collect(),
    };
    let moved = |node| Command::Send {
        node,
        message: ToNode::Moved {
            node: 2,
            data: "data-2".into(),
        },
    };
    assert_eq!(
        commands(&mut s),
        [
            Command::Send {
                node: 2,
                message: start
            },
            moved(0),
            moved(1)
        ]
    );
    assert_eq!(s.state(2), &NodeState::Running);
    for node in 0..3 {
        s.handle(
            t2,
            Event::Message {
                node,
                message: ToMaster::Done {
                    report: Box::new(report(["A", "B", "C"][node])),
                },
            },
        );
        s.handle(t2, closed(node));
        s.handle(
            t2,
            Event::Exited {
                node,
                cause: ExitCause::Status(0),
            },
        );
    }
    assert!(s.is_over());
    let outcome = s.outcome();
    assert_eq!(outcome.failure, None);
    let c = outcome.nodes[2].0.as_ref().expect("C's report");
    assert_eq!(
        c.restarts,
        [Restart {
            cause: "killed by signal 9 (SIGKILL)".into(),
            recovered_in: Duration::from_millis(30),
        }]
    );
    assert!(outcome.nodes[1].0.as_ref().unwrap().restarts.is_empty());
}

#[test]
fn restarts_back_off_and_a_node_out_of_restarts_fails_the_run_naming_them() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 2);
    let mut now = t0;
    for restart in 0..2 {
        killed(&mut s, now, 1);
        commands(&mut s);
        // 0, then 100 ms.
        let wait = Backoff::default().wait(restart);
        if !wait.is_zero() {
            s.tick(now + wait - Duration::from_millis(1));
            assert_eq!(commands(&mut s), [], "restart {restart} too early");
        }
        now += wait;
        s.tick(now);
        assert!(matches!(
            &commands(&mut s)[..],
            [Command::Restart { node: 1, .. }]
        ));
        ready(&mut s, now, 1);
        commands(&mut s);
    }
    killed(&mut s, now, 1);
    assert_eq!(
        failure(&mut s),
        "node B on host localhost used its 2 restarts (killed by signal 9 (SIGKILL); \
         killed by signal 9 (SIGKILL)) and ended again: killed by signal 9 (SIGKILL)"
    );
    let backoff = Backoff::default();
    assert_eq!(backoff.wait(2), Duration::from_millis(200));
    assert_eq!(backoff.wait(40), backoff.max);
}

/// B's function panics at id 7: its process says so.
fn function_failed(s: &mut Supervisor, now: Instant) {
    let boom = Failure::Node {
        node: "B".into(),
        seq: Some(7),
        message: "panicked: boom".into(),
    };
    s.handle(
        now,
        Event::Message {
            node: 1,
            message: ToMaster::Failed {
                failure: boom,
                report: Box::new(report("B")),
                passing: true,
            },
        },
    );
}

/// B's function panics, and its process exits as it says; the clock
/// ticks.
fn function_failed_and_exited(s: &mut Supervisor, now: Instant) {
    function_failed(s, now);
    s.handle(now, closed(1));
    s.handle(
        now,
        Event::Exited {
            node: 1,
            cause: ExitCause::Status(1),
        },
    );
    s.tick(now);
}

#[test]
fn a_failed_function_restarts_its_node_with_the_failure_as_cause() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 1);
    function_failed_and_exited(&mut s, t0);
    let said = commands(&mut s);
    assert!(
        matches!(&said[..], [Command::Warn(w), Command::Restart { node: 1, .. }] if w.contains("node B failed at seq 7: panicked: boom; restarting it")),
        "{said:?}"
    );
    // Its second failure is the run's, with its first as its restart.
    ready(&mut s, t0, 1);
    commands(&mut s);
    function_failed(&mut s, t0);
    assert_eq!(
        failure(&mut s),
        "node B on host localhost used its 1 restarts (node B failed at seq 7: panicked: boom) \
         and ended again: node B failed at seq 7: panicked: boom"
    );
}

/// Bad input from upstream (still in the ring: a restarted process would
/// read it again) fails the run at once, restarts left or not.
#[test]
fn a_failure_that_would_come_again_is_not_restarted() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 3);
    let bad = Failure::Node {
        node: "B".into(),
        seq: Some(9),
        message: "from A: bad frame".into(),
    };
    s.handle(
        t0,
        Event::Message {
            node: 1,
            message: ToMaster::Failed {
                failure: bad,
                report: Box::new(report("B")),
                passing: false,
            },
        },
    );
    assert_eq!(failure(&mut s), "node B failed at seq 9: from A: bad frame");
    // The positive control: the same failure, passing, restarts.
    let mut s = restartable(t0, 3);
    function_failed_and_exited(&mut s, t0);
    assert!(commands(&mut s)
        .iter()
        .any(|c| matches!(c, Command::Restart { node: 1, .. })));
}

#[test]
fn a_node_waiting_for_its_restart_ends_with_an_abort() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 3);
    killed(&mut s, t0, 0);
    s.handle(t0, Event::Abort);
    assert_eq!(s.state(0), &NodeState::Ended { cause: None });
    s.tick(t0);
    assert!(
        !commands(&mut s)
            .iter()
            .any(|c| matches!(c, Command::Restart { .. })),
        "no restart once aborting"
    );
}

#[test]
fn a_restart_names_every_process_that_ran_the_node_the_newest_first() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 2);
    killed(&mut s, t0, 1);
    s.tick(t0);
    commands(&mut s);
    // The successor dies before it is ready (before it took the slots of
    // the first process): the next one must know both.
    s.handle(
        t0,
        Event::Spawned {
            node: 1,
            pid: 201,
            start_time: 2001,
        },
    );
    s.handle(t0, Event::Connected(Peer::Node(1)));
    killed(&mut s, t0, 1);
    // It counts as a restart: the next is the second, and waits.
    let later = t0 + Backoff::default().wait(1);
    s.tick(later - Duration::from_millis(1));
    assert!(
        !commands(&mut s)
            .iter()
            .any(|c| matches!(c, Command::Restart { .. })),
        "the second restart waits its back-off"
    );
    s.tick(later);
    let (restart, predecessors) = commands(&mut s)
        .into_iter()
        .find_map(|c| match c {
            Command::Restart {
                restart,
                predecessors,
                ..
            } => Some((restart, predecessors)),
            _ => None,
        })
        .expect("a restart");
    assert_eq!(restart, 2);
    assert_eq!(
        predecessors,
        [
            Predecessor {
                pid: 201,
                start_time: 2001
            },
            Predecessor {
                pid: 101,
                start_time: 1001
            }
        ]
    );
}

#[test]
fn a_drain_waits_for_a_worker_being_restarted_before_the_spouts_hear_it() {
    let t0 = Instant::now();
    let mut s = restartable(t0, 1);
    killed(&mut s, t0, 1);
    s.tick(t0);
    commands(&mut s);
    s.handle(t0, Event::Drain);
    // The other worker, C, heard at once.
    s.handle(
        t0,
        Event::Message {
            node: 2,
            message: ToMaster::Draining,
        },
    );
    s.tick(t0);
    let said = commands(&mut s);
    assert!(
        !said.iter().any(|c| matches!(
            c,
            Command::Send {
                node: 0,
                message: ToNode::Drain
            }
        )),
        "the spout waits for the restarted worker: {said:?}"
    );
    // Its successor starts, is told to drain, says it heard: then the spout.
    ready(&mut s, t0, 1);
    let said = commands(&mut s);
    assert!(
        said.iter().any(|c| matches!(
            c,
            Command::Send {
                node: 1,
                message: ToNode::Drain
            }
        )),
        "{said:?}"
    );
    s.handle(
        t0,
        Event::Message {
            node: 1,
            message: ToMaster::Draining,
        },
    );
    s.tick(t0);
    assert!(commands(&mut s).iter().any(|c| matches!(
        c,
        Command::Send {
            node: 0,
            message: ToNode::Drain
        }
    )));
}

#[test]
fn a_restartable_node_dead_during_the_launch_is_a_death_not_out_of_restarts() {
    let t0 = Instant::now();
    let placed = |name: &str| Placed {
        name: name.into(),
        host: "localhost".into(),
        agent: None,
        spout: name == "A",
        restarts: 2,
    };
    let mut s = Supervisor::new(vec![placed("A"), placed("B")], Vec::new(), timeouts(), t0);
    ready(&mut s, t0, 0);
    s.handle(
        t0,
        Event::Spawned {
            node: 1,
            pid: 101,
            start_time: 1001,
        },
    );
    s.handle(t0, Event::Connected(Peer::Node(1)));
    killed(&mut s, t0, 1);
    assert_eq!(
        failure(&mut s),
        "node B (pid 101) on host localhost killed by signal 9 (SIGKILL)"
    );
}
