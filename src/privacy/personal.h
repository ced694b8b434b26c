// Personal parts of an event (docs/privacy.md): the declaration in metadata.privacy, the sealing of those
// parts before anything is written, their opening on read (or a redaction marker once the subject's key is
// destroyed), the redactable form the payload digest of such an event is computed over, and the purge that
// stores that form in place of forgotten parts.
//
// Declaration, in an event's metadata:
//   "privacy": {"subject": "user-17", "personal": ["/email", "/address"]}    JSON Pointers (RFC 6901) into data
//   "privacy": {"subject": "user-17", "personal": "all"}                     the whole data
//   "privacy": {"parts": [{"subject": "user-17", "pointer": "/email"}, ...]}  several subjects
// Stored: the text of every declared part (the client's exact bytes) is replaced in place by
//   {"$cairn.sealed":{"v":1,"k":"<key id>","p":"<pointer>","n":"<nonce>","c":"<ciphertext>"}}   (base64)
// sealed with associated data "<event id>\n<pointer>" and a nonce derived from key, place and value (the same
// event sealed again gives the same bytes); the rest of the data is kept byte for byte. The metadata keeps the
// pointers, with each subject string replaced by its keyed hash. Nothing is re-serialized: parts are found
// with simdjson On-Demand and envelopes by their exact text (which client data of such events may not use).
// Stateless apart from the KeyStore; thread-safe as the KeyStore is.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "log/sealed_form.h"
#include "privacy/keystore.h"

namespace cairn::privacy {

struct Span {
  size_t begin = 0, end = 0;  // byte offsets, [begin, end)
};

struct PersonalPart {
  std::string pointer;  // "" for the whole data
  std::string subject;  // as the client named it (in clear; never stored)
  Span value;           // the part's text in the data read_declaration was given
  Span subject_token;   // the subject's JSON string in that metadata
};

struct Declaration {
  std::vector<PersonalPart> parts;
};

// The declaration in an event's metadata, if any, checked against its data: `what` names the event in
// errors ("events[0]"). Errors are invalid_argument naming the field (metadata.privacy.personal[1], ...).
// Metadata and data must already be valid JSON (the store validates them first). The spans it returns are
// offsets into exactly these texts.
Result<std::optional<Declaration>> read_declaration(std::string_view metadata, std::string_view data, ContentType type,
                                                    std::string_view what);

struct SealedEvent {
  std::string data;                   // with the declared parts sealed
  std::string redactable;             // redactable_form(data), computed in the same pass
  std::string metadata;               // with subjects replaced by their keyed hashes
  std::vector<std::string> subjects;  // the keyed hashes, unique, in order of first appearance
};
// Seals the declared parts under their subjects' keys (created if needed, durably). data and metadata must be
// the texts the declaration was read from.
Result<SealedEvent> seal_event(KeyStore& keys, const Uuid& id, std::string_view data, std::string_view metadata,
                               const Declaration& declaration);

// Whether stored data holds sealed or purged parts, and its redactable form: the log's format
// (log/sealed_form.h), named here too because every user of sealed parts needs them.
using log::has_sealed_parts;
using log::redactable_form;

// The data as the writer wrote it: every sealed part opened; a part whose key was destroyed, or that was
// purged, becomes {"$cairn.redacted":{"reason":"subject forgotten"}} and *redacted is set. kCorruption when
// an envelope is damaged, is not at the place its pointer names, or does not open with its key.
Result<std::string> open_data(const KeyStore& keys, const Uuid& id, std::string_view stored_data, bool* redacted);

// The stored data with every part whose key the KeyStore destroyed replaced by its purged marker (the same
// text redactable_form gives it); *purged counts them. Parts whose keys live, and parts under keys this
// KeyStore never had, are kept. The result's redactable form equals the input's, and its length the input's.
// key_ids, if given, receives the key id of each purged part.
Result<std::string> purge_parts(const KeyStore& keys, std::string_view stored_data, size_t* purged,
                                std::vector<std::string>* key_ids = nullptr);

}  // namespace cairn::privacy
