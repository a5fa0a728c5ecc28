// Column families of the queue store: names, batch-encoding handles and the
// routed writes (see column_families.h). Any thread.
#include "storage/column_families.h"

#include <string>

#include "rocksdb/comparator.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace salvo::storage {
namespace {

// WriteBatch::Put(cf, ...) reads only GetID() and the comparator's
// timestamp size; nothing else of a handle is used to encode a batch.
class FixedIdHandle final : public rocksdb::ColumnFamilyHandle {
 public:
  FixedIdHandle(uint32_t id, const char* name) : id_(id), name_(name) {}
  const std::string& GetName() const override { return name_; }
  uint32_t GetID() const override { return id_; }
  rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override {
    return rocksdb::Status::NotSupported("batch-encoding handle");
  }
  const rocksdb::Comparator* GetComparator() const override {
    return rocksdb::BytewiseComparator();
  }

 private:
  const uint32_t id_;
  const std::string name_;
};

}  // namespace

const char* KeyFamilyName(KeyFamily f) {
  switch (f) {
    case KeyFamily::kDefault: return "default";  // RocksDB's own name
    case KeyFamily::kEvents: return "events";
    case KeyFamily::kBlocks: return "blocks";
    case KeyFamily::kSuppressions: return "suppressions";
    case KeyFamily::kOutcomes: return "outcomes";
  }
  return "?";
}

rocksdb::ColumnFamilyHandle* BatchHandle(KeyFamily f) {
  // Never destroyed: used from any thread until exit.
  static FixedIdHandle* const handles[kNumKeyFamilies] = {
      new FixedIdHandle(0, KeyFamilyName(KeyFamily::kDefault)),
      new FixedIdHandle(1, KeyFamilyName(KeyFamily::kEvents)),
      new FixedIdHandle(2, KeyFamilyName(KeyFamily::kBlocks)),
      new FixedIdHandle(3, KeyFamilyName(KeyFamily::kSuppressions)),
      new FixedIdHandle(4, KeyFamilyName(KeyFamily::kOutcomes)),
  };
  return handles[static_cast<uint32_t>(f)];
}

void RoutedPut(rocksdb::WriteBatch* batch, const rocksdb::Slice& key,
               const rocksdb::Slice& value) {
  batch->Put(BatchHandle(FamilyOfKey(key)), key, value)
      .PermitUncheckedError();  // fails only beyond WriteBatch's size limit
}

void RoutedDelete(rocksdb::WriteBatch* batch, const rocksdb::Slice& key) {
  batch->Delete(BatchHandle(FamilyOfKey(key)), key).PermitUncheckedError();
}

void RoutedSingleDelete(rocksdb::WriteBatch* batch,
                        const rocksdb::Slice& key) {
  batch->SingleDelete(BatchHandle(FamilyOfKey(key)), key)
      .PermitUncheckedError();
}

void RoutedMerge(rocksdb::WriteBatch* batch, const rocksdb::Slice& key,
                 const rocksdb::Slice& value) {
  batch->Merge(BatchHandle(FamilyOfKey(key)), key, value)
      .PermitUncheckedError();
}

}  // namespace salvo::storage
