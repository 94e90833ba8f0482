;; wordcount: a WASI command that counts the words of a JSON string.
;;
;; stdin:  a JSON string, e.g. "the quick\nbrown fox"   (a wasm step's `input`)
;; stdout: {"words":4}
;;
;; Words are runs of characters between whitespace. The escapes \n, \t and \r
;; count as whitespace; the quotes around the string are delimiters; any other
;; escape (\", \\, \uXXXX) is a word character. Input is read in 63 KiB chunks,
;; so its size is not limited by the guest's memory.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; layout: iovec at 0 (ptr, len), byte count at 8, digits at 16..40,
  ;; the output line from 64, the input buffer from 1024
  (data (i32.const 64) "{\"words\":")

  ;; 1 for a byte that separates words: space, tab, newline, carriage return, quote
  (func $separator (param $b i32) (result i32)
    (i32.or
      (i32.or (i32.eq (local.get $b) (i32.const 32)) (i32.eq (local.get $b) (i32.const 9)))
      (i32.or (i32.eq (local.get $b) (i32.const 10))
        (i32.or (i32.eq (local.get $b) (i32.const 13)) (i32.eq (local.get $b) (i32.const 34))))))

  (func (export "_start")
    (local $n i32) (local $i i32) (local $b i32) (local $words i32)
    (local $in_word i32) (local $escaped i32) (local $class i32) (local $p i32) (local $len i32)
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 64512))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $i (i32.const 0))
        (loop $bytes
          (local.set $b (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
          ;; class: 0 word character, 1 separator, 2 undecided (a backslash)
          (if (local.get $escaped)
            (then
              (local.set $escaped (i32.const 0))
              (local.set $class
                (i32.or (i32.eq (local.get $b) (i32.const 110))
                  (i32.or (i32.eq (local.get $b) (i32.const 116)) (i32.eq (local.get $b) (i32.const 114))))))
            (else
              (if (i32.eq (local.get $b) (i32.const 92))
                (then (local.set $escaped (i32.const 1)) (local.set $class (i32.const 2)))
                (else (local.set $class (call $separator (local.get $b)))))))
          (if (i32.eq (local.get $class) (i32.const 1))
            (then (local.set $in_word (i32.const 0)))
            (else
              (if (i32.and (i32.eqz (local.get $class)) (i32.eqz (local.get $in_word)))
                (then
                  (local.set $words (i32.add (local.get $words) (i32.const 1)))
                  (local.set $in_word (i32.const 1))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $bytes (i32.lt_u (local.get $i) (local.get $n))))
        (br $read)))
    ;; the count in decimal, written right to left ending at 40
    (local.set $p (i32.const 40))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $words) (i32.const 10))))
      (local.set $words (i32.div_u (local.get $words) (i32.const 10)))
      (br_if $digits (local.get $words)))
    (local.set $len (i32.sub (i32.const 40) (local.get $p)))
    (memory.copy (i32.const 73) (local.get $p) (local.get $len))
    (i32.store8 (i32.add (i32.const 73) (local.get $len)) (i32.const 125))
    (i32.store8 (i32.add (i32.const 74) (local.get $len)) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.add (i32.const 11) (local.get $len)))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))))
