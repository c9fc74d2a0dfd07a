//! The master's side of the remote hosts of a run: starting their agents
//! (the launcher fans out over SSH) and waiting until each has answered or
//! is known to have failed, then the agents' control connections and SSH
//! sessions until the run ends.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::control::Incoming;
use super::protocol::{encode, FromAgent, RemoteHost, ToAgent};
use super::remote::{AgentLauncher, AgentSession, HostError};
use super::supervisor::Peer;
use clusterduck_transport::wire::write_message;

/// How long the master waits for an agent to end once the run is over.
const AGENT_END: Duration = Duration::from_secs(10);

/// The remote side of a run: one agent per remote host.
#[derive(Debug, Default)]
pub(crate) struct Agents {
    pub(crate) hosts: Vec<RemoteHost>,
    /// Each agent's control connection (sending half), by host index.
    pub(crate) conns: Vec<Option<TcpStream>>,
    /// The SSH sessions of the agents the master started itself.
    pub(crate) sessions: Vec<AgentSession>,
}

impl Agents {
    /// Sends `message` to the agent of host `host`, if it is connected.
    pub(crate) fn send(&mut self, host: usize, message: &ToAgent) {
        if let Some(conn) = &mut self.conns[host] {
            // An agent that cannot be told is gone; its connection's end
            // says so.
            let _ = write_message(conn, &encode(message));
        }
    }

    /// Closes every agent's connection and session; agents end their
    /// nodes and themselves, and the master waits for that.
    pub(crate) fn close(&mut self) {
        for conn in self.conns.iter_mut().filter_map(Option::take) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        let sessions = std::mem::take(&mut self.sessions);
        std::thread::scope(|scope| {
            for session in sessions {
                scope.spawn(move || session.close(AGENT_END));
            }
        });
    }
}

/// What every agent said when it answered.
pub(crate) struct Answered {
    /// Each host's address (where its nodes open their data ports).
    pub(crate) address: Vec<String>,
    /// This machine's address as the first host's agent saw it: where
    /// local nodes with consumers on other hosts open their data ports.
    pub(crate) here: IpAddr,
}

impl Answered {
    /// A run without remote hosts.
    pub(crate) fn none() -> Self {
        Self {
            address: Vec::new(),
            here: [127, 0, 0, 1].into(),
        }
    }
}

/// What is known of each host during a launch: the address its agent
/// answered from, or why it cannot be used.
struct Roll {
    address: Vec<Option<String>>,
    failed: Vec<Option<HostError>>,
    /// This machine's address as the first agent to answer saw it.
    here: Option<IpAddr>,
    index: HashMap<String, usize>,
}

impl Roll {
    fn new(hosts: &[RemoteHost]) -> Self {
        Self {
            address: hosts.iter().map(|_| None).collect(),
            failed: hosts.iter().map(|_| None).collect(),
            here: None,
            index: hosts
                .iter()
                .map(|h| (h.name.clone(), h.index as usize))
                .collect(),
        }
    }

    /// Whether a host has neither answered nor failed.
    fn pending(&self) -> bool {
        self.address
            .iter()
            .zip(&self.failed)
            .any(|(a, f)| a.is_none() && f.is_none())
    }

    fn fail(&mut self, error: HostError) {
        if let Some(&h) = self.index.get(error.host()) {
            self.failed[h].get_or_insert(error);
        }
    }

    /// Takes in one fact of the launch.
    fn take(&mut self, event: Incoming, agents: &mut Agents, launched: Instant, verbose: bool) {
        match event {
            Incoming::Connected(Peer::Agent(h), stream) => agents.conns[h] = Some(stream),
            Incoming::Agent(h, FromAgent::Hello { pid, address, via }) => {
                if verbose {
                    tracing::info!(
                        "run: agent of {} (pid {pid}, at {address}) answered after {:.3}s, started from {via}",
                        agents.hosts[h].name,
                        launched.elapsed().as_secs_f64()
                    );
                }
                self.address[h] = Some(address);
                if self.here.is_none() {
                    self.here = via.parse().ok();
                }
            }
            Incoming::Agent(_, FromAgent::HostFailed { error }) | Incoming::HostFailed(error) => {
                self.fail(error)
            }
            // One that never answered is reported by whoever started it.
            Incoming::Closed(Peer::Agent(h), reason) if self.address[h].is_some() => {
                self.fail(HostError::Agent {
                    host: agents.hosts[h].name.clone(),
                    detail: format!(
                        "it answered, then its connection closed ({})",
                        reason.as_deref().unwrap_or("cleanly")
                    ),
                })
            }
            _ => {}
        }
    }

    /// Every host's address, or every failure, in host order (a host that
    /// never answered within `limit` is one).
    fn close(self, agents: &Agents, limit: Duration) -> Result<Answered, Vec<HostError>> {
        let mut errors = Vec::new();
        for (h, (a, f)) in self.address.iter().zip(self.failed).enumerate() {
            match (a, f) {
                (_, Some(e)) => errors.push(e),
                (None, None) => errors.push(HostError::Agent {
                    host: agents.hosts[h].name.clone(),
                    detail: format!("no answer within {}s", limit.as_secs()),
                }),
                (Some(_), None) => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Answered {
            address: self
                .address
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
            here: self.here.unwrap_or([127, 0, 0, 1].into()),
        })
    }
}

/// Starts every host's agent (the launcher fans out) and waits until each
/// has answered or is known to have failed; every failure is returned, in
/// host order.
pub(crate) fn launch_agents(
    launcher: &AgentLauncher,
    agents: &mut Agents,
    incoming: &Receiver<Incoming>,
    tx: &Sender<Incoming>,
    limit: Duration,
    launched: Instant,
    verbose: bool,
) -> Result<Answered, Vec<HostError>> {
    let hosts = agents.hosts.clone();
    let mut roll = Roll::new(&hosts);
    let deadline = launched + limit;
    std::thread::scope(|scope| {
        let report = tx.clone();
        let starting = scope.spawn(move || {
            launcher.launch(hosts, &|e| {
                let _ = report.send(Incoming::HostFailed(e));
            })
        });
        while roll.pending() {
            let Ok(event) = incoming.recv_deadline(deadline) else {
                break;
            };
            roll.take(event, agents, launched, verbose);
        }
        if roll.pending() {
            // Hosts that did not answer in time: their launch is given up.
            // (Not otherwise: an agent that answered may not have told its
            // SSH session yet, and killing that would end it.)
            launcher.abandon();
        }
        agents.sessions = starting.join().unwrap_or_default();
    });
    // Whatever arrived meanwhile (a failure reported as the launch ended,
    // an agent that answered and is gone already).
    while let Ok(event) = incoming.try_recv() {
        roll.take(event, agents, launched, verbose);
    }
    roll.close(agents, limit)
}
