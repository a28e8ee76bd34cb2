//! [`TextIndex`]: one user's tantivy index, with the set of messages it holds kept in memory so
//! a search knows, without a lookup, which messages it can answer for.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use tantivy::collector::DocSetCollector;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    BytesOptions, FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{NgramTokenizer, TextAnalyzer};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use crate::{FtsError, fold};

/// A message's content GUID.
pub type Guid = [u8; 16];

/// The tokenizer every text field uses: overlapping character trigrams of the whole value.
const TRIGRAMS: &str = "strata_trigrams";

/// A message whose searchable bytes exceed this is recorded as [`Kept::TooLarge`] and read
/// from the store when searched, so one huge message cannot make the index balloon.
pub const MAX_TEXT: usize = 4 << 20;

/// tantivy refuses a writer with less memory than this (15 MB per thread).
const WRITER_MEMORY_MIN: usize = 15_000_000;

/// At most this many trigrams of a needle are looked up: any subset still finds every match.
const MAX_GRAMS: usize = 48;

/// What the index holds of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Its trigrams and searchable bytes.
    Text,
    /// Only that it is too large to index; searches read it from the store.
    TooLarge,
}

/// A message to index: its header block and the body of each text part as written, and the
/// decoded text of those parts as SEARCH compares it.
pub struct Message<'a> {
    /// Its content GUID.
    pub guid: Guid,
    /// The header block.
    pub header: &'a [u8],
    /// Each text part's body, in MIME order.
    pub parts: Vec<&'a [u8]>,
    /// The decoded text of the text parts.
    pub text: &'a str,
    /// What header searches (SUBJECT, FROM, HEADER) compare besides the header block itself:
    /// values unfolded, encoded words decoded, addresses as `name <mailbox@host>`.
    pub fields: &'a [String],
}

/// What SEARCH compares, as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredText {
    /// The header block.
    pub header: Vec<u8>,
    /// Each text part's body, in MIME order.
    pub parts: Vec<Vec<u8>>,
}

/// Where a needle is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The text parts (SEARCH BODY).
    Body,
    /// The header and the text parts (SEARCH TEXT).
    Text,
    /// The header fields' values in every form a header search compares (SUBJECT, FROM,
    /// HEADER): the header block and [`Message::fields`].
    Header,
}

/// How [`TextIndex::open`] found the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// There was no index: a new, empty one.
    Created,
    /// The index was there and readable.
    Existing,
    /// The index could not be read and was replaced by an empty one (it is a cache).
    Reset(String),
}

#[derive(Clone, Copy)]
struct Fields {
    guid: Field,
    hi: Field,
    lo: Field,
    large: Field,
    head: Field,
    body: Field,
    fields: Field,
    header: Field,
    part: Field,
    parts: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let trigrams = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TRIGRAMS)
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        guid: b.add_bytes_field("guid", BytesOptions::default().set_indexed()),
        hi: b.add_u64_field("guid_hi", FAST),
        lo: b.add_u64_field("guid_lo", FAST),
        large: b.add_u64_field("too_large", FAST | INDEXED),
        head: b.add_text_field("head", trigrams.clone()),
        body: b.add_text_field("body", trigrams.clone()),
        fields: b.add_text_field("fields", trigrams),
        header: b.add_bytes_field("header", STORED),
        part: b.add_bytes_field("part", STORED),
        parts: b.add_u64_field("parts", STORED),
    };
    (b.build(), fields)
}

/// One user's full-text index.
pub struct TextIndex {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    f: Fields,
    /// Every message the reader's current searcher holds.
    kept: RwLock<HashMap<Guid, Kept>>,
    /// One writer at a time, opened per batch so an idle user holds no indexing memory.
    writing: Mutex<()>,
    memory: usize,
}

impl TextIndex {
    /// Opens the index in `dir`, creating it if missing and replacing it if it cannot be read.
    /// `memory` bounds the writer's buffer (at least tantivy's 15 MB minimum).
    pub fn open(dir: &Path, memory: usize) -> Result<(TextIndex, Opened), FtsError> {
        let io = |source| FtsError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let existed = dir.join("meta.json").exists();
        std::fs::create_dir_all(dir).map_err(io)?;
        let opened = match Self::open_in(dir, memory) {
            Ok(t) => Ok((
                t,
                if existed {
                    Opened::Existing
                } else {
                    Opened::Created
                },
            )),
            Err(e) if existed => {
                std::fs::remove_dir_all(dir).map_err(io)?;
                std::fs::create_dir_all(dir).map_err(io)?;
                Self::open_in(dir, memory).map(|t| (t, Opened::Reset(e.to_string())))
            }
            Err(e) => Err(e),
        }?;
        Ok(opened)
    }

    fn open_in(dir: &Path, memory: usize) -> Result<TextIndex, FtsError> {
        let t = |source| FtsError::Tantivy {
            path: dir.to_path_buf(),
            source,
        };
        let (schema, f) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| t(e.into()))?;
        let index = Index::open_or_create(directory, schema).map_err(t)?;
        let trigrams = NgramTokenizer::new(3, 3, false).map_err(t)?;
        index
            .tokenizers()
            .register(TRIGRAMS, TextAnalyzer::from(trigrams));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(4)
            .try_into()
            .map_err(t)?;
        let text = TextIndex {
            path: dir.to_path_buf(),
            index,
            reader,
            f,
            kept: RwLock::default(),
            writing: Mutex::new(()),
            memory: memory.max(WRITER_MEMORY_MIN),
        };
        let kept = text.read_kept(&text.reader.searcher())?;
        *text.kept.write().unwrap_or_else(|p| p.into_inner()) = kept;
        Ok(text)
    }

    fn err(&self, source: tantivy::TantivyError) -> FtsError {
        FtsError::Tantivy {
            path: self.path.clone(),
            source,
        }
    }

    /// Every live document's GUID and kind, from the fast fields.
    fn read_kept(&self, searcher: &Searcher) -> Result<HashMap<Guid, Kept>, FtsError> {
        let mut kept = HashMap::new();
        for segment in searcher.segment_readers() {
            let fast = segment.fast_fields();
            let hi = fast.u64("guid_hi").map_err(|e| self.err(e))?;
            let lo = fast.u64("guid_lo").map_err(|e| self.err(e))?;
            let large = fast.u64("too_large").map_err(|e| self.err(e))?;
            for doc in segment.doc_ids_alive() {
                let (Some(h), Some(l)) = (hi.first(doc), lo.first(doc)) else {
                    continue;
                };
                let kind = if large.first(doc).unwrap_or(0) == 1 {
                    Kept::TooLarge
                } else {
                    Kept::Text
                };
                kept.insert(guid_of(h, l), kind);
            }
        }
        Ok(kept)
    }

    /// What the index holds of `guid`, if anything.
    pub fn kept(&self, guid: &Guid) -> Option<Kept> {
        self.kept
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(guid)
            .copied()
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.kept.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every message it holds.
    pub fn guids(&self) -> Vec<Guid> {
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
        kept.keys().copied().collect()
    }

    /// Adds `adds` (replacing what it held of the same GUIDs) and removes `removes`, in one
    /// commit. A removed message is forgotten before the commit, an added one known only
    /// after it, so a search never counts on a document its searcher does not have.
    pub fn apply(&self, adds: &[Message<'_>], removes: &[Guid]) -> Result<(), FtsError> {
        if adds.is_empty() && removes.is_empty() {
            return Ok(());
        }
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
            for g in removes {
                kept.remove(g);
            }
        }
        let mut writer: IndexWriter = self
            .index
            .writer_with_num_threads(1, self.memory)
            .map_err(|e| self.err(e))?;
        for g in removes {
            writer.delete_term(Term::from_field_bytes(self.f.guid, g));
        }
        let mut added = Vec::with_capacity(adds.len());
        for m in adds {
            writer.delete_term(Term::from_field_bytes(self.f.guid, &m.guid));
            let (doc, kind) = self.document(m);
            writer.add_document(doc).map_err(|e| self.err(e))?;
            added.push((m.guid, kind));
        }
        writer.commit().map_err(|e| self.err(e))?;
        self.reader.reload().map_err(|e| self.err(e))?;
        {
            let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
            kept.extend(added);
        }
        // Merges finish here, off the request path, rather than in threads left behind.
        writer.wait_merging_threads().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn document(&self, m: &Message<'_>) -> (TantivyDocument, Kept) {
        let f = self.f;
        let mut doc = TantivyDocument::default();
        doc.add_bytes(f.guid, &m.guid);
        doc.add_u64(f.hi, u64::from_be_bytes(m.guid[..8].try_into().expect("8")));
        doc.add_u64(f.lo, u64::from_be_bytes(m.guid[8..].try_into().expect("8")));
        let size = m.header.len() + m.text.len() + m.parts.iter().map(|p| p.len()).sum::<usize>();
        if size > MAX_TEXT {
            doc.add_u64(f.large, 1);
            return (doc, Kept::TooLarge);
        }
        doc.add_u64(f.large, 0);
        doc.add_text(f.head, fold::ascii(m.header));
        for p in &m.parts {
            doc.add_text(f.body, fold::ascii(p));
        }
        doc.add_text(f.body, fold::text(m.text));
        for v in m.fields {
            let ascii = fold::ascii(v.as_bytes());
            let text = fold::text(v);
            if text != ascii {
                doc.add_text(f.fields, text);
            }
            doc.add_text(f.fields, ascii);
        }
        doc.add_bytes(f.header, m.header);
        for p in &m.parts {
            doc.add_bytes(f.part, p);
        }
        doc.add_u64(f.parts, m.parts.len() as u64);
        (doc, Kept::Text)
    }

    /// Forgets everything (a rebuild starts from here).
    pub fn clear(&self) -> Result<(), FtsError> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.kept.write().unwrap_or_else(|p| p.into_inner()).clear();
        let mut writer: IndexWriter = self
            .index
            .writer_with_num_threads(1, self.memory)
            .map_err(|e| self.err(e))?;
        writer.delete_all_documents().map_err(|e| self.err(e))?;
        writer.commit().map_err(|e| self.err(e))?;
        self.reader.reload().map_err(|e| self.err(e))?;
        writer.wait_merging_threads().map_err(|e| self.err(e))
    }

    /// The messages of kind [`Kept::Text`] that may contain `needle` in `scope`, or `None` when
    /// the index cannot narrow (a needle under three characters or not UTF-8): then every
    /// message is a candidate.
    pub fn candidates(
        &self,
        needle: &[u8],
        scope: Scope,
    ) -> Result<Option<HashSet<Guid>>, FtsError> {
        let Ok(needle) = std::str::from_utf8(needle) else {
            return Ok(None);
        };
        let ascii = fold::ascii(needle.as_bytes());
        let text = fold::text(needle);
        // Each field under each folding its text is indexed with.
        let within = match scope {
            Scope::Body => vec![self.f.body],
            Scope::Text => vec![self.f.body, self.f.head],
            Scope::Header => vec![self.f.head, self.f.fields],
        };
        let mut alternatives = Vec::new();
        for field in within {
            alternatives.push((field, ascii.as_str()));
            if text != ascii && field != self.f.head {
                alternatives.push((field, text.as_str()));
            }
        }
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, folded) in alternatives {
            let grams = self.grams(field, folded)?;
            if grams.is_empty() {
                return Ok(None);
            }
            let all = grams
                .into_iter()
                .map(|g| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(field, &g),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Must, q)
                })
                .collect();
            any.push((Occur::Should, Box::new(BooleanQuery::new(all))));
        }
        let searcher = self.reader.searcher();
        let docs = searcher
            .search(&BooleanQuery::new(any), &DocSetCollector)
            .map_err(|e| self.err(e))?;
        let mut out = HashSet::with_capacity(docs.len());
        let mut columns = HashMap::new();
        for DocAddress {
            segment_ord,
            doc_id,
        } in docs
        {
            let (hi, lo) = match columns.entry(segment_ord) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let fast = searcher.segment_reader(segment_ord).fast_fields();
                    let hi = fast.u64("guid_hi").map_err(|e| self.err(e))?;
                    let lo = fast.u64("guid_lo").map_err(|e| self.err(e))?;
                    v.insert((hi, lo))
                }
            };
            if let (Some(h), Some(l)) = (hi.first(doc_id), lo.first(doc_id)) {
                out.insert(guid_of(h, l));
            }
        }
        Ok(Some(out))
    }

    /// The needle's distinct trigrams as `field` indexes them, at most [`MAX_GRAMS`] spread
    /// over its length.
    fn grams(&self, field: Field, folded: &str) -> Result<Vec<String>, FtsError> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(field)
            .map_err(|e| self.err(e))?;
        let mut stream = analyzer.token_stream(folded);
        let mut seen = HashSet::new();
        let mut grams = Vec::new();
        while stream.advance() {
            let g = stream.token().text.clone();
            if seen.insert(g.clone()) {
                grams.push(g);
            }
        }
        if grams.len() > MAX_GRAMS {
            let step = grams.len() as f64 / MAX_GRAMS as f64;
            grams = (0..MAX_GRAMS)
                .map(|i| grams[(i as f64 * step) as usize].clone())
                .collect();
        }
        Ok(grams)
    }

    /// The searchable bytes of each of `guids` that the index holds as [`Kept::Text`].
    pub fn texts(&self, guids: &[Guid]) -> Result<Vec<Option<StoredText>>, FtsError> {
        let searcher = self.reader.searcher();
        guids.iter().map(|g| self.text_in(&searcher, g)).collect()
    }

    fn text_in(&self, searcher: &Searcher, guid: &Guid) -> Result<Option<StoredText>, FtsError> {
        let q = TermQuery::new(
            Term::from_field_bytes(self.f.guid, guid),
            IndexRecordOption::Basic,
        );
        let docs = searcher
            .search(&q, &DocSetCollector)
            .map_err(|e| self.err(e))?;
        let Some(addr) = docs.into_iter().next() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.err(e))?;
        let Some(header) = doc.get_first(self.f.header).and_then(|v| v.as_bytes()) else {
            return Ok(None); // too large: nothing stored
        };
        let parts: Vec<Vec<u8>> = doc
            .get_all(self.f.part)
            .filter_map(|v| v.as_bytes().map(<[u8]>::to_vec))
            .collect();
        let count = doc.get_first(self.f.parts).and_then(|v| v.as_u64());
        if count != Some(parts.len() as u64) {
            return Ok(None);
        }
        Ok(Some(StoredText {
            header: header.to_vec(),
            parts,
        }))
    }
}

fn guid_of(hi: u64, lo: u64) -> Guid {
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&hi.to_be_bytes());
    g[8..].copy_from_slice(&lo.to_be_bytes());
    g
}
