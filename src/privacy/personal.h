// Personal parts of an event (docs/privacy.md): the declaration in metadata.privacy, the sealing of those
// parts before anything is written, their opening on read (or a redaction marker once the subject's key is
// destroyed), and the redactable form the payload digest of such an event is computed over.
//
// Declaration, in an event's metadata:
//   "privacy": {"subject": "user-17", "personal": ["/email", "/address"]}    JSON Pointers (RFC 6901) into data
//   "privacy": {"subject": "user-17", "personal": "all"}                     the whole data
//   "privacy": {"parts": [{"subject": "user-17", "pointer": "/email"}, ...]}  several subjects
// Stored: every declared part becomes {"$cairn.sealed": {"v": 1, "k": <key id>, "n": <nonce>, "c": <ciphertext>}}
// (base64), sealed with associated data "<event id>\n<pointer>" and a nonce derived from key, place and value
// (the same event sealed again gives the same bytes); the metadata keeps the pointers, with each
// subject replaced by its keyed hash. Data is re-serialized (member order kept).
// Stateless apart from the KeyStore; thread-safe as the KeyStore is.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "privacy/keystore.h"

namespace cairn::privacy {

struct PersonalPart {
  std::string pointer;  // "" for the whole data
  std::string subject;  // as the client named it (in clear; never stored)
};

struct Declaration {
  std::vector<PersonalPart> parts;
};

// The declaration in an event's metadata, if any, checked against its data: `what` names the event in
// errors ("events[0]"). Errors are invalid_argument naming the field (metadata.privacy.personal[1], ...).
Result<std::optional<Declaration>> read_declaration(std::string_view metadata, std::string_view data, ContentType type,
                                                    std::string_view what);

struct SealedEvent {
  std::string data;                   // with the declared parts sealed
  std::string metadata;               // with subjects replaced by their keyed hashes
  std::vector<std::string> subjects;  // the keyed hashes, unique, in order of first appearance
};
// Seals the declared parts under their subjects' keys (created if needed, durably).
Result<SealedEvent> seal_event(KeyStore& keys, const Uuid& id, std::string_view data, std::string_view metadata,
                               const Declaration& declaration);

// Whether stored data holds sealed parts (a cheap check before parsing).
bool has_sealed_parts(std::string_view stored_data);

// The data as the writer wrote it: every sealed part opened; a part whose key was destroyed becomes
// {"$cairn.redacted": {"reason": "subject forgotten"}} and *redacted is set.
Result<std::string> open_data(const KeyStore& keys, const Uuid& id, std::string_view stored_data, bool* redacted);

// Every sealed part replaced by {"$cairn.purged": "<hex SHA-256(nonce ‖ ciphertext)>"}: what a purge leaves,
// and what the payload digest of an event with sealed parts covers (so the chain survives the purge).
Result<std::string> redactable_form(std::string_view stored_data);

}  // namespace cairn::privacy
