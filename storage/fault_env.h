// Power-loss simulation for RocksDB (tests only). PowerLossFileSystem wraps a
// real rocksdb::FileSystem and remembers, per file, how many bytes were synced
// and, per directory, which entries were created or renamed since the
// directory was last synced. CutPower() (or the n-th mutating call, see
// CutPowerAtOp) freezes the disk: every later write, sync, create, rename or
// delete fails with an IOError and changes nothing. After the DB is closed,
// DropUnsyncedData() makes the real files look as they would after the power
// loss: each written file is truncated to its last synced size, files whose
// directory entry was never synced are removed, and unsynced renames are
// undone. Deletes are modelled as durable at once (a resurrected obsolete
// file is the lesser risk and RocksDB ignores it).
//
// Thread safety: every method may be called from any thread; all mutating
// calls are serialized by one mutex so a power cut never splits a call.
#ifndef SALVO_STORAGE_FAULT_ENV_H_
#define SALVO_STORAGE_FAULT_ENV_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace salvo::storage {

class PowerLossFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // What DropUnsyncedData threw away.
  struct LossStats {
    int64_t files_truncated = 0;
    int64_t bytes_dropped = 0;
    int64_t files_removed = 0;   // created, directory never synced
    int64_t files_restored = 0;  // renamed over, directory never synced
  };

  explicit PowerLossFileSystem(std::shared_ptr<rocksdb::FileSystem> base);
  ~PowerLossFileSystem() override;

  static const char* kClassName() { return "SalvoPowerLossFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // Cut power when the n-th mutating call (1-based, counted from now) arrives;
  // that call already fails. n <= 0 disarms.
  void CutPowerAtOp(int64_t n);
  void CutPower();
  bool power_is_off() const;
  // Mutating calls seen since construction (or the last DropUnsyncedData).
  int64_t ops() const;

  // Call after every DB using this file system is closed. Rewrites the real
  // files to their durable state, then powers back on with clean bookkeeping.
  [[nodiscard]] absl::Status DropUnsyncedData(LossStats* stats);

  // Gate for every mutating call: false once the power is off (the call must
  // then fail without effect). Counts the call. Requires mu_ held.
  bool AdmitLocked();
  std::mutex& mu() { return mu_; }
  // Bookkeeping used by the file wrappers (mu_ held).
  void OnAppendLocked(const std::string& path, uint64_t new_size);
  void OnSyncLocked(const std::string& path, uint64_t size);
  void OnTruncateLocked(const std::string& path, uint64_t size);

  rocksdb::IOStatus NewWritableFile(const std::string& f,
                                    const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& f, const rocksdb::FileOptions& opts,
      std::unique_ptr<rocksdb::FSWritableFile>* r,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(
      const std::string& f, const std::string& old_f,
      const rocksdb::FileOptions& opts,
      std::unique_ptr<rocksdb::FSWritableFile>* r,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f,
                                    const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name,
                                 const rocksdb::IOOptions& io_opts,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f,
                               const rocksdb::IOOptions& opts,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& opts,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& src, const std::string& dst,
                             const rocksdb::IOOptions& opts,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size,
                             const rocksdb::IOOptions& opts,
                             rocksdb::IODebugContext* dbg) override;
  // Directory fsync: the entries pending in `dir` become durable.
  void OnDirSyncLocked(const std::string& dir);

 private:
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
  };
  // Durable content of `path` right now (nullopt: absent), read from disk and
  // cut to the synced size. mu_ held.
  std::optional<std::string> DurableContentLocked(const std::string& path);
  void NoteNewEntryLocked(const std::string& path, bool existed);

  mutable std::mutex mu_;
  bool power_off_ = false;
  int64_t ops_ = 0;
  int64_t cut_at_ = 0;  // 0: not armed
  std::map<std::string, FileState> files_;
  // dir -> (name -> durable content before the unsynced change; nullopt:
  // the entry did not exist).
  std::map<std::string, std::map<std::string, std::optional<std::string>>>
      pending_entries_;
};

// An Env whose file system is `fs` (and default threads and clock). The Env
// must outlive every DB opened with it.
std::unique_ptr<rocksdb::Env> NewEnvOnFileSystem(
    std::shared_ptr<rocksdb::FileSystem> fs);

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_FAULT_ENV_H_
