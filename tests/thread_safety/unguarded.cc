// The negative test of `make test-thread-safety`: every marked line breaks the lock discipline, and clang's
// -verify mode fails unless each one is reported (and nothing else is). If the annotations of base/mutex.h
// or base/thread_annotations.h stopped working (a macro expanding to nothing under clang), this file would
// compile silently and the check would fail. Compiled by clang only (-fsyntax-only), never built.
#include "base/mutex.h"

namespace {

class Account {
 public:
  void deposit_unlocked(int n) {
    balance_ += n;  // expected-warning {{writing variable 'balance_' requires holding mutex 'mu_' exclusively}}
  }
  int peek() const {
    return balance_;  // expected-warning {{reading variable 'balance_' requires holding mutex 'mu_'}}
  }
  void add_locked(int n) CAIRN_REQUIRES(mu_) { balance_ += n; }
  void deposit_without_lock(int n) {
    add_locked(n);  // expected-warning {{calling function 'add_locked' requires holding mutex 'mu_' exclusively}}
  }
  void deposit(int n) {
    cairn::base::MutexLock g(mu_);
    balance_ += n;
  }
  int after_unlock() {
    cairn::base::UniqueLock lock(mu_);
    lock.unlock();
    return balance_;  // expected-warning {{reading variable 'balance_' requires holding mutex 'mu_'}}
  }

 private:
  mutable cairn::base::Mutex mu_;
  int balance_ CAIRN_GUARDED_BY(mu_) = 0;
};

class Table {
 public:
  void put_shared(int v) {
    cairn::base::ReaderLock g(mu_);
    value_ = v;  // expected-warning {{writing variable 'value_' requires holding shared_mutex 'mu_' exclusively}}
  }
  int get() {
    cairn::base::ReaderLock g(mu_);
    return value_;
  }

 private:
  cairn::base::SharedMutex mu_;
  int value_ CAIRN_GUARDED_BY(mu_) = 0;
};

}  // namespace
