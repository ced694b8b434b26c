// Annotated mutexes for clang's thread-safety analysis (base/thread_annotations.h): thin wrappers over
// std::mutex / std::shared_mutex whose lock and unlock carry capability attributes, so that CAIRN_GUARDED_BY
// and CAIRN_REQUIRES are checked by `make test-thread-safety`. Zero cost: every member is an inline forward.
// Ownership and lifetime: each wrapper owns its std:: mutex; a scoped lock borrows the mutex, which must
// outlive it. Thread safety: that of the std:: type underneath; a scoped lock is used by one thread.
// Waits keep std::condition_variable (no condition_variable_any: it takes a second mutex): pass
// UniqueLock::native() to wait(), and write the predicate as a loop (`while (!ready_) cv_.wait(lock.native());`)
// so that the analysis sees the guarded reads under the lock, which it cannot in a predicate lambda.
#pragma once

#include <cassert>
#include <mutex>
#include <shared_mutex>

#include "base/thread_annotations.h"

namespace cairn::base {

class CAIRN_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() CAIRN_ACQUIRE() { mu_.lock(); }
  void unlock() CAIRN_RELEASE() { mu_.unlock(); }
  bool try_lock() CAIRN_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // The std::mutex underneath, for std::unique_lock and std::condition_variable (not analysed).
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class CAIRN_CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() CAIRN_ACQUIRE() { mu_.lock(); }
  void unlock() CAIRN_RELEASE() { mu_.unlock(); }
  bool try_lock() CAIRN_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  void lock_shared() CAIRN_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() CAIRN_RELEASE_SHARED() { mu_.unlock_shared(); }
  bool try_lock_shared() CAIRN_TRY_ACQUIRE_SHARED(true) { return mu_.try_lock_shared(); }
  std::shared_mutex& native() { return mu_; }

 private:
  std::shared_mutex mu_;
};

// Holds mu for its scope, like std::lock_guard.
class CAIRN_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) CAIRN_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() CAIRN_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A std::unique_lock<std::mutex> on mu: may be unlocked and locked again in its scope, and native() is what
// std::condition_variable::wait takes. A function handed a UniqueLock& (and annotated CAIRN_REQUIRES(mu))
// drops and retakes it with unlock(mu) / lock(mu): clang 14 cannot tie a reference to a scoped lock to the
// mutex it holds, so the function names the mutex.
class CAIRN_SCOPED_CAPABILITY UniqueLock {
 public:
  explicit UniqueLock(Mutex& mu) CAIRN_ACQUIRE(mu) : lock_(mu.native()) {}
  ~UniqueLock() CAIRN_RELEASE() {}  // std::unique_lock unlocks if it owns the mutex
  UniqueLock(const UniqueLock&) = delete;
  UniqueLock& operator=(const UniqueLock&) = delete;

  void lock() CAIRN_ACQUIRE() { lock_.lock(); }
  void unlock() CAIRN_RELEASE() { lock_.unlock(); }
  // mu: the mutex this lock was made on. Not analysed inside: the body goes through lock_, not mu.
  void lock(Mutex& mu) CAIRN_ACQUIRE(mu) CAIRN_NO_THREAD_SAFETY_ANALYSIS {
    assert(lock_.mutex() == &mu.native());
    (void)mu;
    lock_.lock();
  }
  void unlock(Mutex& mu) CAIRN_RELEASE(mu) CAIRN_NO_THREAD_SAFETY_ANALYSIS {
    assert(lock_.mutex() == &mu.native());
    (void)mu;
    lock_.unlock();
  }
  bool owns_lock() const { return lock_.owns_lock(); }
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// Holds mu shared for its scope, like std::shared_lock.
class CAIRN_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) CAIRN_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() CAIRN_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

// Holds mu exclusively for its scope; may be unlocked and locked again in it (like std::unique_lock).
class CAIRN_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) CAIRN_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() CAIRN_RELEASE() {
    if (held_) mu_.unlock();
  }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

  void lock() CAIRN_ACQUIRE() {
    mu_.lock();
    held_ = true;
  }
  void unlock() CAIRN_RELEASE() {
    mu_.unlock();
    held_ = false;
  }

 private:
  SharedMutex& mu_;
  bool held_ = true;
};

}  // namespace cairn::base
