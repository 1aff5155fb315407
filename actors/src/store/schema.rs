// @generated automatically by Diesel CLI.

diesel::table! {
    consumer_offsets (group_id, topic, partition) {
        group_id -> Text,
        topic -> Text,
        partition -> Int4,
        next_offset -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Int8,
        topic -> Text,
        partition -> Int4,
        kafka_offset -> Int8,
        reason -> Text,
        error -> Text,
        payload -> Bytea,
        kafka_key -> Nullable<Bytea>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    partition_owners (group_id, topic, partition) {
        group_id -> Text,
        topic -> Text,
        partition -> Int4,
        owner -> Text,
        generation -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stream_metrics_minute (window_start, stream_id) {
        window_start -> Timestamptz,
        window_end -> Timestamptz,
        stream_id -> Text,
        active_viewers -> Int8,
        chat_messages -> Int8,
        donations_usd -> Nullable<Numeric>,
        donations_cents -> Int8,
        events -> Int8,
        chat_chars -> Int8,
        donations -> Int8,
        viewer_joins -> Int8,
        viewer_leaves -> Int8,
        unique_chatters -> Int8,
        is_final -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stream_state (stream_id) {
        stream_id -> Text,
        is_live -> Bool,
        active_viewers -> Int8,
        last_event_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        topic -> Nullable<Text>,
        partition -> Nullable<Int4>,
        watermark -> Nullable<Timestamptz>,
        latest_window_start -> Nullable<Timestamptz>,
        has_open_windows -> Bool,
        has_windows -> Bool,
    }
}

diesel::table! {
    stream_viewers (stream_id, user_id) {
        stream_id -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    window_chatter_chunks (stream_id, window_start, chunk) {
        stream_id -> Text,
        window_start -> Timestamptz,
        chunk -> Int4,
        user_ids -> Array<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    consumer_offsets,
    dead_letters,
    partition_owners,
    stream_metrics_minute,
    stream_state,
    stream_viewers,
    window_chatter_chunks,
);
