//! Streaming replication, synchronous commit and the client that writes.

use super::world::{Event, World};
use crate::machine::ReplicaProgress;

impl World {
    pub(super) fn replicas_of(&self, p: usize) -> Vec<ReplicaProgress> {
        let Some(pd) = &self.members[p].pg.data else {
            return Vec::new();
        };
        (0..self.members.len())
            .filter(|&j| j != p)
            .filter_map(|j| {
                let pg = &self.members[j].pg;
                let d = pg.data.as_ref()?;
                (pg.standby()
                    && pg.upstream == Some(p)
                    && pg.streaming
                    && !self.partitioned(j, p)
                    && d.is_prefix_of(pd, pd.wal.len()))
                .then(|| ReplicaProgress {
                    name: self.names[j].clone(),
                    flushed_lsn: d.lsn(),
                })
            })
            .collect()
    }

    /// A clean shutdown sends the rest of the WAL to connected standbys.
    pub(super) fn flush_to_standbys(&mut self, p: usize) {
        let Some(d) = &self.members[p].pg.data else {
            return;
        };
        let (len, last) = (d.wal.len(), *d.wal.last().unwrap_or(&0));
        for j in 0..self.members.len() {
            let pg = &self.members[j].pg;
            if j != p && pg.standby() && pg.upstream == Some(p) && !self.partitioned(j, p) {
                let dl = self.delay();
                self.push(
                    self.now + dl,
                    Event::Deliver {
                        m: j,
                        from: p,
                        len,
                        last,
                    },
                );
            }
        }
    }

    pub(super) fn stream(&mut self, m: usize) {
        let Some(u) = self.members[m].pg.upstream else {
            return;
        };
        if !self.members[m].pg.standby() || self.frozen(m) || self.frozen(u) {
            return;
        }
        let up = &self.members[u].pg;
        let ok = u != m
            && up.writable()
            && !self.partitioned(m, u)
            && match (&self.members[m].pg.data, &up.data) {
                (Some(mine), Some(theirs)) => {
                    mine.sysid == theirs.sysid && mine.is_prefix_of(theirs, theirs.wal.len())
                }
                _ => false,
            };
        let tip = up
            .data
            .as_ref()
            .filter(|_| ok)
            .map(|d| (d.wal.len(), *d.wal.last().unwrap_or(&0)));
        self.members[m].pg.streaming = ok;
        if let Some((len, last)) = tip {
            let dl = self.delay();
            self.push(
                self.now + dl,
                Event::Deliver {
                    m,
                    from: u,
                    len,
                    last,
                },
            );
        }
    }

    pub(super) fn deliver(&mut self, m: usize, from: usize, len: usize, last: u64) {
        if from == m || !self.members[m].pg.standby() || self.members[m].pg.upstream != Some(from) {
            return;
        }
        let (a, b) = if m < from {
            let (lo, hi) = self.members.split_at_mut(from);
            (&mut lo[m], &hi[0])
        } else {
            let (lo, hi) = self.members.split_at_mut(m);
            (&mut hi[0], &lo[from])
        };
        let (Some(d), Some(src)) = (&mut a.pg.data, &b.pg.data) else {
            return;
        };
        if src.wal.len() < len || src.wal.get(len.wrapping_sub(1)) != Some(&last) {
            return;
        }
        if !d.is_prefix_of(src, len) || d.wal.len() >= len {
            return;
        }
        let start = d.wal.len();
        d.wal.extend_from_slice(&src.wal[start..len]);
        d.history.clear();
        d.history
            .extend(src.history.iter().filter(|(_, s)| *s < len).copied());
        self.try_acks(from);
    }

    pub(super) fn client_write(&mut self) {
        let writable: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].pg.writable() && !self.frozen(i))
            .collect();
        let [p] = writable[..] else {
            return;
        };
        let id = self.next_record;
        self.next_record += 1;
        self.report.writes += 1;
        let pg = &mut self.members[p].pg;
        let d = pg.data.as_mut().expect("a writable server has data");
        d.wal.push(id);
        let need = d.wal.len();
        if pg.sync == crate::machine::SyncStandbys::Off {
            self.checker.ack(id);
            self.report.acked += 1;
        } else {
            pg.pending.push((id, need));
            self.try_acks(p);
        }
    }

    /// Acknowledges the commits every synchronous standby of `p` has flushed.
    pub(super) fn try_acks(&mut self, p: usize) {
        if self.members[p].pg.pending.is_empty() || !self.members[p].pg.writable() || self.frozen(p)
        {
            return;
        }
        let names = self.members[p].pg.sync.names();
        if self.members[p].pg.sync == crate::machine::SyncStandbys::Off {
            let pending = std::mem::take(&mut self.members[p].pg.pending);
            for (id, _) in pending {
                self.checker.ack(id);
                self.report.acked += 1;
            }
            return;
        }
        if names.is_empty() {
            return;
        }
        let replicas = self.replicas_of(p);
        let mut min = usize::MAX;
        for n in &names {
            match replicas.iter().find(|r| r.name == *n) {
                Some(r) => min = min.min((r.flushed_lsn.0 / super::pg::RECORD_BYTES) as usize),
                None => return,
            }
        }
        let pending = &mut self.members[p].pg.pending;
        let done = pending.iter().take_while(|(_, need)| *need <= min).count();
        let acked: Vec<u64> = pending.drain(..done).map(|(id, _)| id).collect();
        for id in acked {
            self.checker.ack(id);
            self.report.acked += 1;
        }
    }
}
