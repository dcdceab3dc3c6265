//! The NFA that runs a pattern whose wildcards the plain-text forms of
//! [`super::glob::Glob`] cannot express.
//!
//! A pattern of fewer than 128 steps keeps its state set in one `u128` and
//! advances all states at once with bit operations, using a table of which
//! states can read each ASCII character. Longer patterns use a state set on
//! the heap. Either way the cost is linear in the path length, with no
//! backtracking, and only the long form allocates while matching.

/// One state of a pattern's NFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// One given character.
    Char(char),
    /// `?`: one character other than `/`.
    AnyButSlash,
    /// `[...]`: one character of a class.
    Class(Class),
    /// `*`: a run of characters other than `/`, possibly empty.
    Star,
    /// `**` before more pattern: nothing, or a run of characters other than
    /// a line feed that ends with `/`.
    Dirs,
    /// A final `**`: any run of characters other than a line feed.
    Rest,
}

impl Step {
    /// Checks whether the step can read `c`, either to move on or to stay.
    fn reads(&self, c: char) -> bool {
        match self {
            Step::Char(expected) => c == *expected,
            Step::AnyButSlash | Step::Star => c != '/',
            Step::Class(class) => class.matches(c),
            Step::Dirs | Step::Rest => c != '\n',
        }
    }

    /// Checks whether the step moves on to the next state after reading one
    /// character, as opposed to repeating.
    fn reads_once(&self) -> bool {
        matches!(self, Step::Char(_) | Step::AnyButSlash | Step::Class(_))
    }
}

/// A character class: ranges of characters, possibly negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Class {
    /// Whether the class matches the characters outside the ranges.
    pub(super) negated: bool,
    /// Inclusive ranges. A single character is a range of one.
    pub(super) ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let listed = self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        listed != self.negated
    }
}

/// Patterns with fewer steps than this keep their NFA states in a `u128`,
/// whose top bit is the accepting state of a 127-step pattern.
const SMALL_STEPS: usize = 128;

/// A pattern's NFA, with facts about its matches that reject most paths
/// before the NFA runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Program {
    /// The NFA states. The state after the last step accepts.
    steps: Vec<Step>,
    /// Text that every match starts with: the characters before the first
    /// wildcard.
    head: String,
    /// Text that every match ends with: the characters after the last
    /// wildcard.
    tail: String,
    /// The number of `/` in every match, when only literal `/` characters
    /// can match a `/`.
    slashes: Option<usize>,
    /// Bit masks for patterns of fewer than [`SMALL_STEPS`] steps.
    masks: Option<Box<Masks>>,
}

impl Program {
    /// Builds the program for the steps of a pattern.
    pub(super) fn new(steps: Vec<Step>) -> Program {
        let plain = |step: &Step| match step {
            Step::Char(c) => Some(*c),
            _ => None,
        };
        let head = steps.iter().map_while(plain).collect();
        let mut tail: Vec<char> = steps.iter().rev().map_while(plain).collect();
        tail.reverse();

        let wildcard_reads_slash = steps
            .iter()
            .any(|step| !matches!(step, Step::Char(_)) && step.reads('/'));
        let slashes = if wildcard_reads_slash {
            None
        } else {
            Some(
                steps
                    .iter()
                    .filter(|step| **step == Step::Char('/'))
                    .count(),
            )
        };

        let masks = (steps.len() < SMALL_STEPS).then(|| Box::new(Masks::new(&steps)));
        Program {
            head,
            tail: tail.into_iter().collect(),
            slashes,
            masks,
            steps,
        }
    }

    /// Checks whether the pattern matches `path` or one of its ancestor
    /// directories.
    pub(super) fn matches_path_or_ancestor(&self, path: &str) -> bool {
        // Only the ancestor (or the path) with the right number of `/` can
        // match such a pattern.
        if let Some(slashes) = self.slashes {
            return prefix_with_slashes(path, slashes)
                .is_some_and(|candidate| self.matches_whole(candidate));
        }

        // A matching ancestor is a prefix of the path, so the path starts
        // with the head too.
        if !starts_with(path, &self.head) {
            return false;
        }
        if !self.tail.is_empty() && !any_prefix_ends_with(path, &self.tail) {
            return false;
        }
        match &self.masks {
            Some(masks) => run_path_or_ancestor(SmallNfa::new(&self.steps, masks), path),
            None => run_path_or_ancestor(LargeNfa::new(&self.steps), path),
        }
    }

    /// Checks whether the pattern matches all of `text`.
    fn matches_whole(&self, text: &str) -> bool {
        if !starts_with(text, &self.head) || !ends_with(text, &self.tail) {
            return false;
        }
        match &self.masks {
            Some(masks) => run_whole(SmallNfa::new(&self.steps, masks), text),
            None => run_whole(LargeNfa::new(&self.steps), text),
        }
    }

    /// Checks whether some path below the directory `dir` can match, which
    /// is when some state is still live after reading `dir/`.
    pub(super) fn matches_some_path_below(&self, dir: &str) -> bool {
        let below = dir.chars().chain(std::iter::once('/'));
        match &self.masks {
            Some(masks) => stays_live(SmallNfa::new(&self.steps, masks), below),
            None => stays_live(LargeNfa::new(&self.steps), below),
        }
    }
}

/// Returns the ancestor of `path`, or `path` itself, that contains exactly
/// `slashes` slashes, if there is one.
fn prefix_with_slashes(path: &str, slashes: usize) -> Option<&str> {
    let mut seen = 0;
    for (index, _) in path.match_indices('/') {
        if seen == slashes {
            return path.get(..index);
        }
        seen += 1;
    }
    (seen == slashes).then_some(path)
}

// Heads and tails are a few bytes long, so these loops are cheaper than the
// `memcmp` call that `str::starts_with` and `str::ends_with` make.

/// Checks whether `text` starts with `head`.
fn starts_with(text: &str, head: &str) -> bool {
    text.len() >= head.len() && text.bytes().zip(head.bytes()).all(|(a, b)| a == b)
}

/// Checks whether `text` ends with `tail`.
fn ends_with(text: &str, tail: &str) -> bool {
    bytes_end_with(text.as_bytes(), tail.as_bytes())
}

fn bytes_end_with(text: &[u8], tail: &[u8]) -> bool {
    text.len() >= tail.len()
        && text
            .iter()
            .rev()
            .zip(tail.iter().rev())
            .all(|(a, b)| a == b)
}

/// Checks whether `path` or one of its ancestors ends with `tail`.
pub(super) fn any_prefix_ends_with(path: &str, tail: &str) -> bool {
    let (path, tail) = (path.as_bytes(), tail.as_bytes());
    bytes_end_with(path, tail)
        || path.iter().enumerate().any(|(index, &byte)| {
            byte == b'/'
                && path
                    .get(..index)
                    .is_some_and(|prefix| bytes_end_with(prefix, tail))
        })
}

/// A running simulation of an NFA: the set of states it can be in after
/// the characters read so far.
trait Simulation {
    /// Reads one character. Returns whether any state is still live.
    fn read(&mut self, c: char) -> bool;
    /// Checks whether the characters read so far are a match.
    fn accepts(&self) -> bool;
}

fn run_whole(mut nfa: impl Simulation, text: &str) -> bool {
    text.chars().all(|c| nfa.read(c)) && nfa.accepts()
}

fn run_path_or_ancestor(mut nfa: impl Simulation, path: &str) -> bool {
    for (index, c) in path.char_indices() {
        // The text read so far, before this `/`, is an ancestor.
        if c == '/' && index > 0 && nfa.accepts() {
            return true;
        }
        if !nfa.read(c) {
            return false;
        }
    }
    nfa.accepts()
}

fn stays_live(mut nfa: impl Simulation, text: impl IntoIterator<Item = char>) -> bool {
    text.into_iter().all(|c| nfa.read(c))
}

/// Bit masks over the states of a pattern of fewer than [`SMALL_STEPS`]
/// steps. Bit `i` is state `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Masks {
    /// For each ASCII character, the states that can read it.
    ascii: [u128; 128],
    /// States that move on after reading one character.
    once: u128,
    /// `*` and final `**` states, which stay after reading and may also
    /// move on.
    repeat: u128,
    /// `**` states before more pattern, which stay after reading and move
    /// on only after a `/`.
    dirs: u128,
    /// States that can match nothing, so entering one also enters the next.
    optional: u128,
    /// The state before the first character, with the states it reaches
    /// without reading.
    start: u128,
    /// The accepting state.
    accept: u128,
}

impl Masks {
    fn new(steps: &[Step]) -> Masks {
        let bits = |keep: &dyn Fn(&Step) -> bool| {
            steps
                .iter()
                .enumerate()
                .filter(|(_, step)| keep(step))
                .fold(0u128, |bits, (state, _)| bits | 1 << state)
        };
        let mut ascii = [0u128; 128];
        for (code, mask) in (0u8..).zip(ascii.iter_mut()) {
            *mask = bits(&|step| step.reads(char::from(code)));
        }
        let optional = bits(&|step| !step.reads_once());

        Masks {
            ascii,
            once: bits(&Step::reads_once),
            repeat: bits(&|step| matches!(step, Step::Star | Step::Rest)),
            dirs: bits(&|step| *step == Step::Dirs),
            optional,
            start: close(1, optional),
            accept: 1 << steps.len(),
        }
    }
}

/// Adds to `states` the states that optional states in it lead to without
/// reading a character.
fn close(mut states: u128, optional: u128) -> u128 {
    loop {
        let closed = states | (states & optional) << 1;
        if closed == states {
            return states;
        }
        states = closed;
    }
}

/// The simulation of a pattern of fewer than [`SMALL_STEPS`] steps.
struct SmallNfa<'a> {
    steps: &'a [Step],
    masks: &'a Masks,
    current: u128,
}

impl<'a> SmallNfa<'a> {
    fn new(steps: &'a [Step], masks: &'a Masks) -> Self {
        SmallNfa {
            steps,
            masks,
            current: masks.start,
        }
    }

    /// Returns the states that can read `c`.
    fn readers(&self, c: char) -> u128 {
        if let Some(&mask) = usize::try_from(u32::from(c))
            .ok()
            .and_then(|code| self.masks.ascii.get(code))
        {
            return mask;
        }
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, step)| step.reads(c))
            .fold(0, |bits, (state, _)| bits | 1 << state)
    }
}

impl Simulation for SmallNfa<'_> {
    fn read(&mut self, c: char) -> bool {
        let masks = self.masks;
        let live = self.current & self.readers(c);

        // A repeating `*` may also stop after this character, which enters
        // the next state. A `**` run ends only after a `/`.
        let mut entered = (live & (masks.once | masks.repeat)) << 1;
        if c == '/' {
            entered |= (live & masks.dirs) << 1;
        }
        let stayed = live & (masks.repeat | masks.dirs);

        self.current = stayed | close(entered, masks.optional);
        self.current != 0
    }

    fn accepts(&self) -> bool {
        self.current & self.masks.accept != 0
    }
}

/// The simulation of a pattern of [`SMALL_STEPS`] steps or more, with its
/// state sets as bit vectors on the heap.
struct LargeNfa<'a> {
    steps: &'a [Step],
    current: Vec<u64>,
    next: Vec<u64>,
}

impl<'a> LargeNfa<'a> {
    fn new(steps: &'a [Step]) -> Self {
        let words = (steps.len() + 1).div_ceil(64);
        let mut nfa = LargeNfa {
            steps,
            current: vec![0; words],
            next: vec![0; words],
        };
        enter(steps, &mut nfa.current, 0);
        nfa
    }
}

impl Simulation for LargeNfa<'_> {
    fn read(&mut self, c: char) -> bool {
        self.next.fill(0);
        for (state, step) in self.steps.iter().enumerate() {
            if !contains(&self.current, state) || !step.reads(c) {
                continue;
            }
            match step {
                Step::Dirs => {
                    insert(&mut self.next, state);
                    if c == '/' {
                        enter(self.steps, &mut self.next, state + 1);
                    }
                }
                Step::Star | Step::Rest => enter(self.steps, &mut self.next, state),
                _ => enter(self.steps, &mut self.next, state + 1),
            }
        }
        std::mem::swap(&mut self.current, &mut self.next);
        self.current.iter().any(|&word| word != 0)
    }

    fn accepts(&self) -> bool {
        contains(&self.current, self.steps.len())
    }
}

fn contains(set: &[u64], state: usize) -> bool {
    set.get(state / 64)
        .is_some_and(|word| word & (1 << (state % 64)) != 0)
}

fn insert(set: &mut [u64], state: usize) {
    if let Some(word) = set.get_mut(state / 64) {
        *word |= 1 << (state % 64);
    }
}

/// Adds `state` to `set`, and the states after it that optional steps
/// (`*`, `**`) lead to without reading a character.
fn enter(steps: &[Step], set: &mut [u64], state: usize) {
    let mut state = state;
    loop {
        insert(set, state);
        match steps.get(state) {
            Some(step) if !step.reads_once() => state += 1,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(steps: Vec<Step>) -> Program {
        Program::new(steps)
    }

    fn chars(text: &str) -> Vec<Step> {
        text.chars().map(Step::Char).collect()
    }

    /// `*.log` as steps.
    fn star_log() -> Vec<Step> {
        let mut steps = vec![Step::Star];
        steps.extend(chars(".log"));
        steps
    }

    /// `a/**/b*` as steps.
    fn dirs_pattern() -> Vec<Step> {
        let mut steps = chars("a/");
        steps.extend([Step::Dirs, Step::Char('b'), Step::Star]);
        steps
    }

    #[test]
    fn program_finds_head_and_tail() {
        let mut steps = chars("src/");
        steps.push(Step::Star);
        steps.extend(chars(".rs"));
        let program = program(steps);
        assert_eq!(program.head, "src/");
        assert_eq!(program.tail, ".rs");
    }

    #[test]
    fn program_counts_fixed_slashes() {
        let mut steps = chars("a/");
        steps.extend([Step::Star, Step::Char('/'), Step::AnyButSlash]);
        assert_eq!(program(steps).slashes, Some(2));
    }

    #[test]
    fn slash_reading_wildcards_unfix_slashes() {
        assert_eq!(program(dirs_pattern()).slashes, None);
        let negated = Step::Class(Class {
            negated: true,
            ranges: vec![('x', 'x')],
        });
        assert_eq!(program(vec![negated]).slashes, None);
    }

    #[test]
    fn prefix_with_slashes_picks_one_ancestor() {
        assert_eq!(prefix_with_slashes("a/b/c", 0), Some("a"));
        assert_eq!(prefix_with_slashes("a/b/c", 1), Some("a/b"));
        assert_eq!(prefix_with_slashes("a/b/c", 2), Some("a/b/c"));
        assert_eq!(prefix_with_slashes("a/b/c", 3), None);
    }

    #[test]
    fn fixed_depth_pattern_matches_its_ancestor() {
        let program = program(star_log());
        assert!(program.matches_path_or_ancestor("x.log"));
        assert!(program.matches_path_or_ancestor("x.log/inner"));
        assert!(!program.matches_path_or_ancestor("dir/x.log"));
    }

    #[test]
    fn dirs_leave_only_after_slash() {
        let program = program(dirs_pattern());
        assert!(program.matches_path_or_ancestor("a/b"));
        assert!(program.matches_path_or_ancestor("a/x/y/bz"));
        assert!(program.matches_path_or_ancestor("a/x/bz/more"));
        assert!(!program.matches_path_or_ancestor("a/xb"));
        assert!(!program.matches_path_or_ancestor("a/x\n/b"));
    }

    #[test]
    fn non_ascii_chars_use_steps() {
        let program = program(vec![Step::Char('é'), Step::AnyButSlash, Step::Star]);
        assert!(program.matches_path_or_ancestor("é☺"));
        assert!(!program.matches_path_or_ancestor("e☺"));
    }

    #[test]
    fn live_after_dir_means_match_below() {
        let program = program(dirs_pattern());
        assert!(program.matches_some_path_below("a"));
        assert!(program.matches_some_path_below("a/x"));
        assert!(!program.matches_some_path_below("b"));
    }

    /// Runs both simulations on the same pattern and text.
    fn both(steps: &[Step], text: &str) -> (bool, bool) {
        let masks = Masks::new(steps);
        let small = run_path_or_ancestor(SmallNfa::new(steps, &masks), text);
        let large = run_path_or_ancestor(LargeNfa::new(steps), text);
        (small, large)
    }

    #[test]
    fn small_and_large_simulations_agree() {
        let class = Step::Class(Class {
            negated: false,
            ranges: vec![('a', 'c'), ('é', 'é')],
        });
        let patterns = [
            star_log(),
            dirs_pattern(),
            vec![Step::Dirs, Step::Star, Step::Char('.'), Step::Char('x')],
            vec![Step::Char('d'), Step::Star, Step::Char('/'), Step::Rest],
            vec![
                class,
                Step::AnyButSlash,
                Step::Star,
                Step::Dirs,
                Step::Char('z'),
            ],
            vec![Step::Star, Step::Dirs, Step::Star],
        ];
        let texts = [
            "", "a", "x.log", "a/b", "a/q/b", "d/x", "dd", "bé", "éxx/z", "a/b/c/z", "q/w.x",
            "a\n/z", "ab/z", "é/é",
        ];
        for steps in &patterns {
            for text in texts {
                let (small, large) = both(steps, text);
                assert_eq!(small, large, "steps {steps:?}, text {text:?}");
            }
        }
    }

    #[test]
    fn long_pattern_uses_large_simulation() {
        let mut steps = chars(&"a".repeat(150));
        steps.push(Step::Star);
        steps.extend(chars("/k"));
        let program = program(steps);
        assert!(program.masks.is_none());
        let prefix = "a".repeat(150);
        assert!(program.matches_path_or_ancestor(&format!("{prefix}xy/k/more")));
        assert!(!program.matches_path_or_ancestor(&format!("{prefix}xy/j")));
        assert!(program.matches_some_path_below(&prefix));
        assert!(!program.matches_some_path_below("b"));
    }
}
