//! RADIUS Identifier allocation for one socket: up to 256 outstanding, never two alike.

use std::collections::VecDeque;

/// Hands out Identifiers 0..max. A freed Identifier goes to the back of the queue, so the one
/// reused next is the one idle longest (a late reply then rarely meets a new request).
#[derive(Debug)]
pub struct IdAllocator {
    free: VecDeque<u8>,
    outstanding: [bool; 256],
    in_use: usize,
}

impl IdAllocator {
    /// An allocator of `max` Identifiers (1–256; larger values are clamped to 256).
    pub fn new(max: usize) -> IdAllocator {
        let max = max.clamp(1, 256);
        IdAllocator {
            free: (0..max).map(|i| i as u8).collect(),
            outstanding: [false; 256],
            in_use: 0,
        }
    }

    /// A free Identifier, or `None` when all are outstanding.
    pub fn alloc(&mut self) -> Option<u8> {
        let id = self.free.pop_front()?;
        self.outstanding[id as usize] = true;
        self.in_use += 1;
        Some(id)
    }

    /// Returns `id`; false (and nothing changes) if it was not outstanding.
    pub fn free(&mut self, id: u8) -> bool {
        if !self.outstanding[id as usize] {
            return false;
        }
        self.outstanding[id as usize] = false;
        self.in_use -= 1;
        self.free.push_back(id);
        true
    }

    pub fn is_outstanding(&self, id: u8) -> bool {
        self.outstanding[id as usize]
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}
