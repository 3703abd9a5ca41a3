print("uniformer")
