CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
