//! Fuzz target: the tnetstring decoders (`tnetstring::decode` on a slice, `read_value` on a
//! stream).
//!
//! What must hold for any input: no panic; the slice decoder and the stream reader agree on
//! the first value (both accept it or both refuse it, with the same length and the same
//! value); every decoded value re-encodes to bytes that decode to a value that encodes to the
//! same bytes again (values are compared by their encoding, so a NaN equals itself).
#![no_main]

use flowtap_flow::tnetstring::{self, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sliced = tnetstring::decode(data);
    let mut stream = data;
    let streamed = tnetstring::read_value(&mut stream, 0);
    match (&sliced, &streamed) {
        (Ok((a, used)), Ok(Some(b))) => {
            assert_eq!(
                *used,
                data.len() - stream.len(),
                "both readers consume one value"
            );
            assert_eq!(
                tnetstring::encode(a),
                tnetstring::encode(b),
                "both readers agree"
            );
        }
        (Ok(_), _) | (_, Ok(Some(_))) => {
            panic!("one reader accepts what the other refuses: {sliced:?} / {streamed:?}")
        }
        _ => {}
    }
    if let Ok((value, _)) = &sliced {
        round_trip(value);
    }
    // The rest of the stream, value by value, as a flow file is read.
    if let Ok(values) = tnetstring::decode_all(data) {
        values.iter().for_each(round_trip);
    }
});

/// `encode(decode(encode(v))) == encode(v)`.
fn round_trip(value: &Value) {
    let encoded = tnetstring::encode(value);
    let (again, used) = match tnetstring::decode(&encoded) {
        Ok(decoded) => decoded,
        Err(e) => panic!("an encoded value does not decode: {e}\n{value:?}"),
    };
    assert_eq!(used, encoded.len(), "the encoding is one value");
    assert_eq!(tnetstring::encode(&again), encoded, "re-encoding is stable");
}
